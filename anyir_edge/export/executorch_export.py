"""PyTorch -> ExecuTorch (``.pte``, XNNPACK delegate) for phones.

The network is traced in its architecture's *mobile* deploy form with ``torch.export``
(:func:`anyir_edge.export.mobile_export.bounded_export`: batch 1, H and W dynamic multiples of
the size multiple up to ``max_side``; ExecuTorch plans its memory for that bound), lowered with :class:`XnnpackPartitioner`, and written with the
engine contract's metadata as the program's constant method
:data:`anyir_edge.artifact.PTE_METADATA_METHOD`.
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


def delegation_report(graph_module) -> dict:
    """How much of the lowered graph XNNPACK took: delegate partitions, the compute ops inside
    them, and the compute ops left on ExecuTorch's portable kernels (op -> count);
    ``delegated_share`` = delegated / all compute ops."""
    partitions = sum(1 for n in graph_module.graph.nodes
                     if n.op == "call_function" and "executorch_call_delegate" in _op_name(n.target))
    outside = _compute_ops(graph_module.graph)
    inside = 0
    for _, sub in graph_module.named_children():
        program = getattr(sub, "original_module", None)  # a LoweredBackendModule: the program it took
        if program is not None:
            inside += sum(_compute_ops(program.graph).values())
    total = inside + sum(outside.values())
    return {"delegate": "XnnpackPartitioner", "partitions": partitions, "delegated_ops": inside,
            "delegated_share": round(inside / total, 4) if total else None,
            "ops_outside_delegate": dict(sorted(outside.items())), "ops_outside_count": sum(outside.values())}


def lower(model, fft: str, max_side: int, meta: dict[str, str], log=lambda s: None) -> tuple[bytes, dict]:
    """The ``.pte`` bytes of ``model`` (a RestorationNet) and its delegation report."""
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        raise ExportError("--to executorch needs ExecuTorch: pip install anyir-edge[executorch]") from None
    from .mobile_export import bounded_export, quiet

    ep, form = bounded_export(model, fft, max_side, log=log)
    meta_tensor = torch.tensor(list(artifact.encode_pte_metadata(meta)), dtype=torch.uint8)
    with quiet():
        log("lowering to XNNPACK (minutes for a large network) ...")
        try:
            edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                               constant_methods={artifact.PTE_METADATA_METHOD: meta_tensor})
            report = delegation_report(edge.exported_program().graph_module)
            buf = edge.to_executorch().buffer
        except Exception as e:
            raise ExportError(f"ExecuTorch lowering failed ({first_line(e)})") from None
    report["deploy_form"] = form
    return buf, report
