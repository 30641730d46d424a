"""PyTorch -> ExecuTorch (``.pte``, XNNPACK delegate) for phones.

The network is traced in its architecture's *mobile* deploy form with ``torch.export``, batch
1, either as one method ``forward`` with H and W dynamic multiples of the size multiple up to
``max_side`` (:func:`anyir_edge.export.mobile_export.bounded_export`; ExecuTorch plans its
memory for that bound) or as one static method per size
(:func:`~anyir_edge.export.mobile_export.static_exports`, named
:func:`anyir_edge.artifact.sized_entry_name`; the methods share one copy of the weights).  It
is lowered with :class:`XnnpackPartitioner` and written with the engine contract's metadata as
the program's constant method :data:`anyir_edge.artifact.PTE_METADATA_METHOD`.
"""
from __future__ import annotations

import collections

import torch

from .. import artifact
from ..errors import first_line
from .formats import ExportError

#: ops that are bookkeeping, not compute, when counting what the delegate did not take
_BOOKKEEPING = ("getitem", "sym_size", "executorch_call_delegate")


def _op_name(target) -> str:
    s = str(target)
    if s.startswith("<EdgeOpOverload: "):
        s = s[len("<EdgeOpOverload: "):].split(">", 1)[0]
    return s.replace("aten.", "").replace(".default", "")


def _compute_ops(graph) -> collections.Counter:
    """Compute ops of a graph (op -> count), bookkeeping left out."""
    ops = collections.Counter()
    for n in graph.nodes:
        if n.op == "call_function":
            name = _op_name(n.target)
            if not any(b in name for b in _BOOKKEEPING) and not name.startswith("<built-in"):
                ops[name] += 1
    return ops


def delegation_report(graph_modules: list) -> dict:
    """How much of a lowered program XNNPACK took (the graph modules of its methods, summed):
    delegate partitions, the compute ops inside them, and the compute ops left on ExecuTorch's
    portable kernels (op -> count); ``delegated_share`` = delegated / all compute ops."""
    partitions, inside, outside = 0, 0, collections.Counter()
    for gm in graph_modules:
        partitions += sum(1 for n in gm.graph.nodes
                          if n.op == "call_function" and "executorch_call_delegate" in _op_name(n.target))
        outside += _compute_ops(gm.graph)
        for _, sub in gm.named_children():
            program = getattr(sub, "original_module", None)  # a LoweredBackendModule: the program it took
            if program is not None:
                inside += sum(_compute_ops(program.graph).values())
    total = inside + sum(outside.values())
    return {"delegate": "XnnpackPartitioner", "partitions": partitions, "delegated_ops": inside,
            "delegated_share": round(inside / total, 4) if total else None,
            "ops_outside_delegate": dict(sorted(outside.items())), "ops_outside_count": sum(outside.values())}


def lower(model, fft: str, meta: dict[str, str], max_side: int | None = None, sizes=None,
          log=lambda s: None, half: bool = False) -> tuple[bytes, dict]:
    """The ``.pte`` bytes of ``model`` (a RestorationNet) and its delegation report: one dynamic
    method up to ``max_side``, or one static method per (H, W) of ``sizes``; ``half``: float16
    weights and compute behind float32 input and output (XNNPACK's FP16 kernels)."""
    from .mobile_export import bounded_export, quiet, static_exports

    with quiet():  # its import brings torchao's log lines
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
        except ImportError:
            raise ExportError("--to executorch needs ExecuTorch: pip install anyir-edge[executorch]") from None

    if sizes:
        programs, form = static_exports(model, fft, sizes, log=log, half=half)
    else:
        ep, form = bounded_export(model, fft, max_side, log=log, half=half)
        programs = {"forward": ep}
    meta_tensor = torch.tensor(list(artifact.encode_pte_metadata(meta)), dtype=torch.uint8)
    log(f"lowering {len(programs)} method(s) to XNNPACK (minutes for a large network) ...")
    with quiet():
        try:
            edge = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()],
                                               constant_methods={artifact.PTE_METADATA_METHOD: meta_tensor})
            report = delegation_report([edge.exported_program(name).graph_module for name in programs])
            buf = edge.to_executorch().buffer
        except Exception as e:
            raise ExportError(f"ExecuTorch lowering failed ({first_line(e)})") from None
    report["deploy_form"] = form
    return buf, report
