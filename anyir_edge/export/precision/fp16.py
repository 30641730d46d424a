"""FP16 ONNX: the block list kept in FP32 and the conversion (module docstring of the package)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable


from ...artifact import PREFIX as META_PREFIX
from .graph import _ensure_names, _stamp, drop_cast_pairs, topo_sort
from .search import DEFAULT_MAX_EVALS, ParityProbe, bisect_keep

# ONNX op types kept in FP32 in an FP16 graph (LayerNorm, softmax, reductions, variance statistics)
FP16_BLOCK_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2", "ReduceSum", "ReduceSumSquare",
                  "ReduceMax", "ReduceMin", "ReduceLogSumExp", "Pow", "Sqrt", "Reciprocal", "Exp", "Log")
# ops between a ReduceL2 and the Div that normalises q / k by it
_QK_NORM_CHAIN = ("Clip", "Max", "Expand", "Add", "Div")


def fp16_block_nodes(model) -> list[str]:
    """Names of the nodes kept in FP32 by rule: :data:`FP16_BLOCK_OPS` and the q/k normalisation
    (Clip / Expand / Div after each ReduceL2), in graph order."""
    nodes = list(model.graph.node)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep = {n.name for n in nodes if n.op_type in FP16_BLOCK_OPS}
    for n in nodes:
        if n.op_type != "ReduceL2":
            continue
        frontier, depth = list(n.output), 0
        while frontier and depth < 4:
            nxt = []
            for t in frontier:
                for c in consumers.get(t, []):
                    if c.op_type in _QK_NORM_CHAIN and c.name not in keep:
                        keep.add(c.name)
                        if c.op_type != "Div":
                            nxt.extend(c.output)
            frontier, depth = nxt, depth + 1
    return [n.name for n in nodes if n.name in keep]


def _fp16_graph(model, block: list[str]):
    import copy

    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(copy.deepcopy(model), keep_io_types=True, op_block_list=list(FP16_BLOCK_OPS),
                                    node_block_list=list(block))
    drop_cast_pairs(half)
    topo_sort(half)
    return half


def convert_fp16(src, dst, probe: ParityProbe | None = None, threshold: float | None = None, search: bool = True,
                 max_evals: int = DEFAULT_MAX_EVALS, log: Callable[[str], None] | None = None) -> dict:
    """FP32 ONNX ``src`` -> FP16 ONNX ``dst`` (float32 I/O).  With a ``probe`` and ``threshold`` the
    block list grows by bisection until parity passes (``search``).  Returns the report."""
    import onnx

    model = onnx.load(str(src))
    _ensure_names(model)
    rule = fp16_block_nodes(model)
    block, bisected, psnr_db = list(rule), [], None
    work = Path(tempfile.mkdtemp(prefix=".fp16-", dir=Path(dst).parent))
    try:
        def build(extra: list[str]) -> Path:
            p = work / "candidate.onnx"
            onnx.save(_fp16_graph(model, rule + extra), str(p))
            return p

        if probe is not None and threshold is not None:
            psnr_db = probe(build([]))
            if log:
                log(f"FP16 with the rule block list ({len(rule)} nodes in FP32): parity {psnr_db:.1f} dB")
            if psnr_db < threshold and search:
                cand = [n.name for n in model.graph.node if n.name not in set(rule)
                        and n.op_type not in ("Shape", "Constant", "ConstantOfShape")]
                if log:
                    log(f"below the {threshold:g} dB gate: bisecting which of {len(cand)} nodes must stay FP32 ...")
                scores = {}

                def passes(extra):
                    scores[len(extra)] = probe(build(list(extra)))
                    return scores[len(extra)] >= threshold

                found = bisect_keep(cand, passes, max_evals, log)
                if found is not None:
                    bisected = found
                    block = rule + bisected
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    half = _fp16_graph(model, block)
    n_fp16 = sum(1 for n in half.graph.node if n.op_type not in ("Cast",)) - len(block)
    report = {"precision": "fp16", "converter": "onnxruntime.transformers.float16.convert_float_to_float16",
              "keep_io_types": True, "fp32_ops": list(FP16_BLOCK_OPS), "fp32_nodes_rule": len(rule),
              "fp32_nodes_bisected": bisected, "fp32_nodes": block, "fp16_nodes": n_fp16,
              "cast_nodes": sum(1 for n in half.graph.node if n.op_type == "Cast")}
    _stamp(half, {META_PREFIX + "precision": "fp16", META_PREFIX + "fp16_fp32_ops": json.dumps(list(FP16_BLOCK_OPS)),
                  META_PREFIX + "fp16_fp32_nodes": json.dumps(block),
                  META_PREFIX + "fp16_fp32_nodes_bisected": json.dumps(bisected)})
    onnx.save(half, str(dst))
    return report
