"""Reduced precision engines (issue #8): FP16 and INT8 that keep their quality, or are refused.

FP16 (ONNX): ``onnxruntime.transformers.float16.convert_float_to_float16`` with
``keep_io_types=True`` (the engine still takes and returns float32) and a block list kept in
FP32: every node of :data:`FP16_BLOCK_OPS` (LayerNorm, softmax, reductions, the squares and
roots of variance-style statistics) plus the normalisation of q and k (the Clip / Expand /
Div chain after each ReduceL2, :func:`fp16_block_nodes`).  When the graph then misses the
parity gate, :func:`bisect_keep` searches (Polygraphy ``debug precision`` style: one binary
search for the shortest prefix, in topological order, that must stay FP32, a second for the
shortest suffix of that prefix) for a contiguous window of further nodes to keep in FP32.
The final block list is stamped into the model's metadata
(``anyir_edge.fp16_fp32_nodes``).  On a CPU, onnxruntime has few FP16 kernels and inserts
casts back to FP32 around the rest: the FP16 ONNX is a half-size artifact for GPUs / NPUs,
not a faster CPU engine.

FP16 (OpenVINO): the IR is saved with ``compress_to_fp16=True`` (weights in FP16; OpenVINO
keeps precision-sensitive subgraphs such as normalisations in FP32 itself); the CPU plugin
still computes in FP32 (``INFERENCE_PRECISION_HINT`` f32 in the backend).

INT8 (ONNX): ``onnxruntime.quantization.quantize_static`` in QDQ format, per-channel
symmetric weights in 7 bits (``reduce_range``), UINT8 activations, MinMax calibration on real images degraded with every supported
degradation (:func:`anyir_edge.export.calibration.calibration_samples`; without ``--calib`` the shipped asset crops, with a
warning), quantizing :data:`INT8_OP_TYPES`.  Three kinds of nodes stay in float by rule
(:func:`int8_rule_float_nodes`: the image's reader, the output's writer, and the consumers of
products of two activations, i.e. the gated FFN's output projections).  When parity still fails,
:func:`bisect_keep` finds further nodes to leave in float (``nodes_to_exclude``); when that fails too, dynamic
quantization (``quantize_dynamic``, INT8 weights, activations quantized at run time) is
tried.  The quantized / excluded nodes are stamped into the metadata and the certificate.
Why 7-bit weights: x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) multiply UINT8
activations by INT8 weights with ``VPMADDUBSW``, which adds pairs of products into a saturating
16-bit integer; full-range weights overflow it.  Measured on an AVX2 CPU (anyir-tiny, the
12 parity inputs): 8-bit weights 13.1 dB min parity in onnxruntime, 7-bit 31.9 dB; an 8-bit
engine certified on a VNNI CPU is therefore broken on an AVX2 one.  7 bits cost little on
VNNI CPUs and make one engine correct on every x86 CPU (ORT's quantization guide recommends
``reduce_range`` for non-VNNI machines).  The certificate records the CPU it was checked on.

INT8 (OpenVINO): NNCF post-training quantization (``nncf.quantize`` with an
``nncf.Dataset`` of the same calibration samples, ``ModelType.TRANSFORMER`` so that the
attention's softmax / normalisations are kept in float) when NNCF is installed and its IR
passes the parity gate; otherwise the INT8 (ONNX) Q/DQ graph above (7-bit weights, convolutions
only: :data:`OPENVINO_INT8_OP_TYPES`), its search judged on OpenVINO's execution, converted to
an IR (OpenVINO reads Q/DQ pairs as FakeQuantize and runs the convolutions with INT8 kernels).
On AnyIR, NNCF's IR loses parity in the CPU plugin's INT8 execution (10-25 dB, also with
``OverflowFix.ENABLE``; ``benchmarks/openvino_int8_check.py``); the 7-bit Q/DQ graph keeps it
(33 dB before the search on an AVX2 CPU, as when its FakeQuantize ops are emulated in FP32).

Gates: parity (``PARITY_GATES_DB``: FP16 45 dB, INT8 35 dB) on the parity inputs, and, when a
data root is given, the drop of PSNR against ground truth relative to the PyTorch FP32 model
on CBSD68 sigma 25 and Rain100L (:data:`QUALITY_DROP_DB`: 0.3 dB FP16, 1.0 dB INT8;
:func:`quality_gate`).
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .calibration import CALIB_MAX_IMAGES, CALIB_SIZE, calibration_samples, check_calib_folder  # noqa: F401
from .formats import ExportError
from .onnx_export import quiet_logger

from ..artifact import PREFIX as META_PREFIX
PRECISIONS = ("fp32", "fp16", "int8")
QUALITY_DROP_DB = {"fp16": 0.3, "int8": 1.0}   # max PSNR-vs-ground-truth drop against the PyTorch FP32 model
QUALITY_SETS = ("cbsd68-25", "rain100l")
# ONNX op types kept in FP32 in an FP16 graph (LayerNorm, softmax, reductions, variance statistics)
FP16_BLOCK_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2", "ReduceSum", "ReduceSumSquare",
                  "ReduceMax", "ReduceMin", "ReduceLogSumExp", "Pow", "Sqrt", "Reciprocal", "Exp", "Log")
# ops between a ReduceL2 and the Div that normalises q / k by it
_QK_NORM_CHAIN = ("Clip", "Max", "Expand", "Add", "Div")
INT8_OP_TYPES = ("Conv", "MatMul")
# OpenVINO 2026.4's CPU plugin does not compile onnxruntime's Q/DQ MatMul (activation x activation
# in the attention): "Check 'any_of(scale.size(), OC, 1U)' failed" (dnnl_postops_composer.cpp)
OPENVINO_INT8_OP_TYPES = ("Conv",)
DEFAULT_MAX_EVALS = 24     # parity evaluations a bisection may spend
MAX_FLOAT_FRACTION = 0.5   # an INT8 engine leaving more of its candidates in float is not worth shipping


def precision_of(half: bool | None, int8: bool | None) -> str:
    if half and int8:
        raise ExportError("--fp16 and --int8 exclude each other: choose one precision")
    return "int8" if int8 else "fp16" if half else "fp32"


# ====================================================================== probing
class ParityProbe:
    """Min PSNR of a candidate engine file against the PyTorch FP32 reference on fixed inputs
    (the reference outputs computed once); the cheap inner loop of the bisections."""

    def __init__(self, model, inputs, threads: int | None = None):
        import copy

        import torch

        ref_model = model if model.fft_mode == "fft" else copy.deepcopy(model).set_fft_mode("fft")
        ref_model.eval()
        self.threads = threads
        self.items = []
        for _, _, _, img in inputs:
            x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
            with torch.inference_mode():
                self.items.append((x, ref_model(torch.from_numpy(x)).numpy()))
        self.evals = 0

    def __call__(self, engine_path) -> float:
        from ..runtime import EngineWarning, Restorer
        from .parity import psnr

        self.evals += 1
        try:
            with warnings.catch_warnings():  # a candidate is judged by its parity here, not warned about
                warnings.simplefilter("ignore", EngineWarning)
                with Restorer.open(str(engine_path), device="cpu", threads=self.threads) as r:
                    vals = [psnr(r.forward(x), ref) for x, ref in self.items]
        except Exception:
            return float("-inf")
        vals = [v if np.isfinite(v) else float("-inf") for v in vals]
        return min(vals)


def bisect_keep(candidates: list[str], passes: Callable[[list[str]], bool], max_evals: int = DEFAULT_MAX_EVALS,
                log: Callable[[str], None] | None = None) -> list[str] | None:
    """A contiguous window of ``candidates`` (topological order) that, kept in higher precision,
    makes ``passes`` true; None when even keeping all of them fails.  ``passes([])`` is assumed
    false (the caller tried that).  Two binary searches (shortest passing prefix, then shortest
    passing suffix of it), each step one ``passes`` call; when ``max_evals`` runs out the last
    window known to pass is returned."""
    n = len(candidates)
    if n == 0 or not passes(list(candidates)):
        return None
    evals = 1
    bad, good = 0, n                       # passes(c[:bad]) false, passes(c[:good]) true
    while good - bad > 1 and evals < max_evals:
        mid = (bad + good) // 2
        evals += 1
        if passes(candidates[:mid]):
            good = mid
        else:
            bad = mid
    end = good
    ok, no = 0, end                        # passes(c[ok:end]) true, passes(c[no:end]) false (empty)
    while no - ok > 1 and evals < max_evals:
        mid = (ok + no) // 2
        evals += 1
        if passes(candidates[mid:end]):
            ok = mid
        else:
            no = mid
    window = list(candidates[ok:end])
    if log:
        log(f"  bisection: {len(window)} of {n} nodes kept in higher precision after {evals} parity runs")
    return window


# ========================================================================= FP16
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


def _ensure_names(model) -> None:
    seen = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)


def _stamp(model, meta: dict[str, str]) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props.update(meta)
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=str(v))


def _fp16_graph(model, block: list[str]):
    import copy

    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(copy.deepcopy(model), keep_io_types=True, op_block_list=list(FP16_BLOCK_OPS),
                                    node_block_list=list(block))
    drop_cast_pairs(half)
    topo_sort(half)
    return half


def topo_sort(model) -> None:
    """Sort the graph's nodes topologically (the converter appends its casts out of order;
    ``onnx.checker`` and other runtimes want them sorted)."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    out = []
    while pending:
        rest = []
        for n in pending:
            if all(t in ready for t in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a dangling input: leave the remainder in order
            out.extend(rest)
            break
        pending = rest
    del g.node[:]
    g.node.extend(out)


def drop_cast_pairs(model) -> int:
    """Remove the FP32 -> FP16 -> FP32 round trips the converter leaves between two blocked nodes
    (it casts every blocked node's inputs up and outputs down), so a chain of FP32 nodes really
    stays FP32 (values above 65504 survive).  Returns the number of Cast pairs bypassed."""
    from onnx import TensorProto

    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    rename, dead = {}, set()
    for n in g.node:
        if n.op_type != "Cast" or n.output[0] in outputs:
            continue
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        up = producers.get(n.input[0])
        if to != TensorProto.FLOAT or up is None or up.op_type != "Cast":
            continue
        if next((a.i for a in up.attribute if a.name == "to"), None) != TensorProto.FLOAT16:
            continue
        src = producers.get(up.input[0])
        if src is not None and src.op_type == "Cast":  # only bypass to a tensor computed in FP32
            continue
        rename[n.output[0]] = up.input[0]
        dead.add(id(n))
    if not rename:
        return 0
    for n in g.node:
        for i, t in enumerate(n.input):
            if t in rename:
                n.input[i] = rename[t]
    used = {t for n in g.node if id(n) not in dead for t in n.input} | outputs
    keep = [n for n in g.node if id(n) not in dead and not (n.op_type == "Cast" and n.output[0] not in used)]
    del g.node[:]
    g.node.extend(keep)
    return len(rename)


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


# ========================================================================= INT8
class SampleReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over calibration samples."""

    def __init__(self, samples: list[np.ndarray], input_name: str = "image"):
        from onnxruntime.quantization import CalibrationDataReader

        class _Reader(CalibrationDataReader):
            def __init__(self):
                self._it = iter([{input_name: s} for s in samples])

            def get_next(self):
                return next(self._it, None)

            def rewind(self):
                self._it = iter([{input_name: s} for s in samples])

        self.reader = _Reader()


def quantized_nodes(model, op_types=INT8_OP_TYPES) -> list[str]:
    """Compute nodes (``op_types``) of a QDQ graph whose inputs come from DequantizeLinear, and the
    integer ops of a dynamically quantized one."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        if n.op_type in ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul"):
            out.append(n.name)
        elif n.op_type in op_types and any(getattr(producers.get(i), "op_type", None) == "DequantizeLinear"
                                           for i in n.input):
            out.append(n.name)
    return out


def int8_rule_float_nodes(model, op_types=INT8_OP_TYPES) -> dict[str, str]:
    """Compute nodes (``op_types``) that static INT8 leaves in float by rule, name -> why.

    - the node reading the image (a graph input): hazy and dark inputs are low-contrast, and the
      network amplifies the error of quantizing them to the calibration range's grid (on
      AnyIR-tiny, quantizing only the first convolution costs a hazy photo 25 dB of parity);
    - the node writing the output (its result reaches a graph output directly or through one Add,
      the global residual): its error lands in the image unfiltered;
    - nodes whose input is the product of two activations (``Mul``; the gated feed-forward
      network's ``gelu(a) * b``): heavy-tailed, so a per-tensor 8-bit range keeps 11-18 dB of
      its signal where other inputs keep about 40 dB (ORT ``qdq_loss_debug``).
    On the shipped weights these 18 of 219 convolutions move OpenVINO's static INT8 from 25.0 to
    34.4 dB min parity; the bisection (:func:`bisect_keep`) does the rest."""
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    constants = {t.name for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def writes_output(n) -> bool:
        for o in n.output:
            if o in outputs:
                return True
            if any(c.op_type == "Add" and set(c.output) & outputs for c in consumers.get(o, [])):
                return True
        return False

    rules = {}
    for n in model.graph.node:
        if n.op_type not in op_types or not n.input:
            continue
        act = n.input[0]
        prod = producers.get(act)
        if act in inputs:
            rules[n.name] = "reads the image"
        elif writes_output(n):
            rules[n.name] = "writes the output"
        elif prod is not None and prod.op_type == "Mul" and not set(prod.input) & constants:
            rules[n.name] = "input is a product of two activations"
    return rules


def _worth_it(found, cand, log) -> bool:
    if found is not None and len(found) > MAX_FLOAT_FRACTION * max(1, len(cand)):
        if log:
            log(f"  parity needs {len(found)} of {len(cand)} nodes left in float: not an INT8 engine, not used")
        return False
    return found is not None


def quantize_int8(src, dst, samples: list[np.ndarray], probe: ParityProbe | None = None,
                  threshold: float | None = None, search: bool = True, dynamic_fallback: bool = True,
                  op_types=INT8_OP_TYPES, exclude: list[str] | None = None, max_evals: int = DEFAULT_MAX_EVALS,
                  log: Callable[[str], None] | None = None, calib_desc: dict | None = None,
                  symmetric_activations: bool = False, reduce_range: bool = True, rules: bool = True) -> dict:
    """FP32 ONNX ``src`` -> INT8 QDQ ONNX ``dst``.  Static first; with a ``probe`` and ``threshold``,
    nodes left in float by bisection when parity fails, then dynamic quantization.

    ``symmetric_activations``: INT8 activations with zero point 0 instead of asymmetric UINT8, the
    only Q/DQ form TensorRT's explicit quantization accepts.  ``reduce_range``: 7-bit weights, so
    that CPUs without VNNI do not saturate (module docstring); a GPU engine does not need it.
    ``rules``: leave :func:`int8_rule_float_nodes` in float from the start."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    model = onnx.load(str(src))
    _ensure_names(model)
    rule_nodes = int8_rule_float_nodes(model, op_types) if rules else {}
    base_exclude = list(dict.fromkeys(list(exclude or []) + list(rule_nodes)))
    if rule_nodes and log:
        log(f"INT8: {len(rule_nodes)} nodes left in float by rule (the image's reader, the output's writer, "
            "inputs that are products of activations)")
    work = Path(tempfile.mkdtemp(prefix=".int8-", dir=Path(dst).parent))
    named = work / "named.onnx"
    onnx.save(model, str(named))
    cache = work / "calibration.json"
    has_cache = "calibration_cache_path" in inspect.signature(quantize_static).parameters
    method = "static"

    def static(path: Path, excluded: list[str]) -> Path:
        kw = {"calibration_cache_path": str(cache)} if has_cache else {}
        reader = None if (has_cache and cache.is_file()) else SampleReader(samples).reader
        with quiet_logger():  # onnxruntime.quantization logs to the root logger
            if symmetric_activations:
                # TensorRT: biases stay float (its explicit quantization takes no INT32 bias DQ)
                kw.update(activation_type=QuantType.QInt8,
                          extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
            else:
                kw.update(activation_type=QuantType.QUInt8)
            quantize_static(str(named), str(path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=reduce_range,
                            weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                            nodes_to_exclude=list(excluded), calibrate_method=CalibrationMethod.MinMax, **kw)
        return path

    def dynamic(path: Path) -> Path:
        with quiet_logger():  # onnxruntime.quantization logs to the root logger
            quantize_dynamic(str(named), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                             reduce_range=reduce_range,
                             nodes_to_exclude=list(base_exclude))
        return path

    try:
        cand_path = static(work / "static.onnx", base_exclude)
        excluded, psnr_db, tried = list(base_exclude), None, []
        if probe is not None and threshold is not None:
            psnr_db = probe(cand_path)
            tried.append({"method": "static", "excluded": len(excluded), "psnr_min": round(psnr_db, 3)})
            if log:
                log(f"INT8 static QDQ (per-channel weights): parity {psnr_db:.1f} dB")
            if psnr_db < threshold and search:
                cand = [n.name for n in model.graph.node if n.op_type in op_types and n.name not in set(base_exclude)]
                if log:
                    log(f"below the {threshold:g} dB gate: bisecting which of {len(cand)} nodes to leave in float ...")

                def passes(extra):
                    return probe(static(work / "probe.onnx", base_exclude + list(extra))) >= threshold

                found = bisect_keep(cand, passes, max_evals, log)
                if _worth_it(found, cand, log):
                    excluded = base_exclude + found
                    cand_path = static(work / "static.onnx", excluded)
                    psnr_db = probe(cand_path)
                    tried.append({"method": "static", "excluded": len(excluded), "psnr_min": round(psnr_db, 3)})
            if psnr_db < threshold and search and dynamic_fallback:
                dyn = dynamic(work / "dynamic.onnx")
                d_db = probe(dyn)
                tried.append({"method": "dynamic", "excluded": len(base_exclude), "psnr_min": round(d_db, 3)})
                if log:
                    log(f"INT8 dynamic quantization fallback: parity {d_db:.1f} dB")
                if d_db >= threshold or d_db > psnr_db:
                    cand_path, method, excluded, psnr_db = dyn, "dynamic", list(base_exclude), d_db
        q = onnx.load(str(cand_path))
        done = quantized_nodes(q, op_types)
        activations = "symmetric INT8" if symmetric_activations else "asymmetric UINT8"
        weights = "INT8 weights in 7 bits (reduce_range)" if reduce_range else "INT8 weights"
        report = {"precision": "int8", "method": method,
                  "scheme": (f"QDQ, per-channel symmetric {weights}, {activations} activations, MinMax calibration"
                             if method == "static" else f"dynamic: {weights}, UINT8 activations quantized at run time"),
                  "reduce_range": bool(reduce_range),
                  "op_types": list(op_types), "quantized_nodes": done, "float_nodes": excluded,
                  "float_nodes_by_rule": rule_nodes,
                  "candidates": sum(1 for n in model.graph.node if n.op_type in op_types),
                  "attempts": tried, "calibration": calib_desc if method == "static" else None}
        _stamp(q, {META_PREFIX + "precision": "int8", META_PREFIX + "int8_method": method,
                   META_PREFIX + "int8_quantized_nodes": json.dumps(done),
                   META_PREFIX + "int8_float_nodes": json.dumps(excluded),
                   META_PREFIX + "int8_float_nodes_by_rule": json.dumps(rule_nodes),
                   META_PREFIX + "int8_weight_bits": "7" if reduce_range else "8",
                   META_PREFIX + "int8_calibration": json.dumps(calib_desc or {})})
        onnx.save(q, str(dst))
        return report
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


# ===================================================================== OpenVINO
NNCF_SCHEME = ("NNCF post-training quantization (MIXED preset: symmetric weights, asymmetric activations; "
               "ModelType.TRANSFORMER)")


def openvino_int8_transform(samples: list[np.ndarray], ignored: list[str] | None = None):
    """An ``ov.Model -> ov.Model`` transform quantizing with NNCF post-training quantization."""
    try:
        import nncf
    except ImportError:
        raise ExportError("--to openvino --int8 needs NNCF: pip install anyir-edge[int8]") from None

    def transform(ov_model):
        import logging

        nncf.set_log_level(logging.ERROR)
        scope = nncf.IgnoredScope(names=list(ignored or []), validate=False)
        return nncf.quantize(ov_model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                             preset=nncf.QuantizationPreset.MIXED, subset_size=len(samples), ignored_scope=scope)

    return transform


def openvino_quantized_nodes(xml_path) -> list[str]:
    """Ops of an IR fed by a FakeQuantize (directly or through a Convert) - the INT8 ones."""
    import openvino as ov

    m = ov.Core().read_model(str(xml_path))
    out = []
    for op in m.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        srcs = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        srcs += [s.input_value(0).get_node() for s in srcs if s.get_type_name() in ("Convert", "Multiply", "Subtract")
                 and s.get_input_size()]
        if any(s.get_type_name() in ("FakeQuantize", "FakeConvert") or
               (s.get_type_name() == "Constant" and str(s.get_element_type()) in ("<Type: 'int8_t'>", "i8"))
               for s in srcs):
            out.append(op.get_friendly_name())
    return out


def convert_openvino(onnx_path, xml_path, meta: dict[str, str], precision: str, samples=None,
                     probe: ParityProbe | None = None, threshold: float | None = None, search: bool = True,
                     max_evals: int = DEFAULT_MAX_EVALS, log=None, calib_desc: dict | None = None):
    """Verified FP32 ONNX -> OpenVINO IR at ``precision``; returns (companion files, report).

    INT8: NNCF post-training quantization when NNCF is installed and its IR passes the parity
    gate; otherwise ONNX Runtime's static Q/DQ graph (:func:`quantize_int8`, nodes left in
    float by bisection judged on OpenVINO's own execution), which OpenVINO converts to
    FakeQuantize and runs with its INT8 kernels.  On AnyIR the NNCF graph loses parity in the CPU
    plugin's INT8 execution while the Q/DQ graph keeps it (``benchmarks/openvino_int8_check.py``)."""
    from .openvino_export import convert

    if precision == "fp16":
        meta = {**meta, META_PREFIX + "precision": "fp16"}
        extra = convert(onnx_path, xml_path, meta, compress_to_fp16=True)
        return extra, {"precision": "fp16", "converter": "openvino.save_model(compress_to_fp16=True)",
                       "note": "FP16 weights; OpenVINO keeps precision-sensitive subgraphs in FP32 when compressing; "
                               "the CPU plugin computes in FP32 (INFERENCE_PRECISION_HINT f32)"}
    if precision != "int8":
        raise ExportError(f"unknown precision {precision!r}")

    def int8_meta(method: str, float_nodes: list[str], weight_bits: int) -> dict[str, str]:
        return {**meta, META_PREFIX + "precision": "int8", META_PREFIX + "int8_method": method,
                META_PREFIX + "int8_float_nodes": json.dumps(float_nodes),
                META_PREFIX + "int8_weight_bits": str(weight_bits),
                META_PREFIX + "int8_calibration": json.dumps(calib_desc or {})}

    tried = []
    if nncf_available():
        import onnx

        ignored = list(int8_rule_float_nodes(onnx.load(str(onnx_path)), OPENVINO_INT8_OP_TYPES))
        extra = convert(onnx_path, xml_path, int8_meta("nncf-ptq", ignored, 8),
                        transform=openvino_int8_transform(samples, ignored))
        db = probe(xml_path) if probe is not None and threshold is not None else None
        if db is not None:
            tried.append({"method": "nncf", "excluded": len(ignored), "psnr_min": round(db, 3)})
            if log:
                log(f"INT8 (NNCF post-training quantization): parity {db:.1f} dB")
        if db is None or db >= threshold:
            return extra, {"precision": "int8", "method": "nncf-ptq", "scheme": NNCF_SCHEME,
                           "quantized_nodes": openvino_quantized_nodes(xml_path), "float_nodes": ignored,
                           "attempts": tried, "calibration": calib_desc}
        if log:
            log(f"below the {threshold:g} dB gate (OpenVINO's CPU INT8 kernels lose parity on NNCF's graph: "
                "benchmarks/openvino_int8_check.py); trying ONNX Runtime's Q/DQ graph, which OpenVINO runs as "
                "FakeQuantize ...")
    elif log:
        log("NNCF is not installed (pip install anyir-edge[int8]): quantizing with ONNX Runtime's Q/DQ graph, "
            "which OpenVINO runs as FakeQuantize")

    work = Path(tempfile.mkdtemp(prefix=".ov-int8-", dir=Path(xml_path).parent))
    try:
        def on_openvino(qdq_path) -> float:  # the search is judged on OpenVINO's execution of the graph, not ORT's
            probe_xml = work / "probe.xml"
            convert(qdq_path, probe_xml, {})
            return probe(probe_xml)

        qdq = work / "qdq.onnx"
        rep = quantize_int8(onnx_path, qdq, samples, on_openvino if probe is not None else None, threshold, search,
                            dynamic_fallback=False, op_types=OPENVINO_INT8_OP_TYPES, max_evals=max_evals, log=log,
                            calib_desc=calib_desc)
        extra = convert(qdq, xml_path, int8_meta("onnx-qdq", rep["float_nodes"], 7 if rep["reduce_range"] else 8))
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    tried += [{**a, "method": "onnx-qdq"} for a in rep["attempts"]]
    report = {"precision": "int8", "method": "onnx-qdq",
              "scheme": "ONNX Runtime static Q/DQ (" + rep["scheme"] + ") converted to OpenVINO FakeQuantize",
              "reduce_range": rep["reduce_range"], "quantized_nodes": openvino_quantized_nodes(xml_path),
              "float_nodes": rep["float_nodes"], "float_nodes_by_rule": rep["float_nodes_by_rule"],
              "attempts": tried, "calibration": calib_desc}
    return extra, report


def nncf_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("nncf") is not None
    except (ImportError, ValueError):
        return False


# ================================================================= quality gate
def quality_gate(engine_path, model, precision: str, data_root, sets=QUALITY_SETS, limit: int | None = None,
                 threads: int | None = None, max_drop_db: float | None = None) -> dict:
    """PSNR against ground truth of the engine and of the PyTorch FP32 model on ``sets``
    (:mod:`anyir_edge.eval` protocol); passes when no set drops more than ``max_drop_db``
    (default :data:`QUALITY_DROP_DB` of ``precision``).  ``sets`` may name folders with lq/ and gt/."""
    from ..errors import AnyIRError
    from ..eval import evaluate, resolve_sets
    from ..runtime import Restorer
    from ..runtime import backends

    limit_db = QUALITY_DROP_DB.get(precision, 0.0) if max_drop_db is None else float(max_drop_db)
    try:
        chosen = resolve_sets(list(sets))
    except AnyIRError as e:
        raise ExportError(str(e)) from None
    ref = Restorer(backends.get("torch")(model, device="cpu", threads=threads, fft_mode="fold"), tile=0)
    rows = {}
    with Restorer.open(str(engine_path), device="cpu", threads=threads, tile=0) as eng:
        for s in chosen:
            try:
                r_ref = evaluate(ref.restore, [s], Path(data_root), limit=limit, progress=False)["sets"][s.name]
                r_eng = evaluate(eng.restore, [s], Path(data_root), limit=limit, progress=False)["sets"][s.name]
            except AnyIRError as e:
                raise ExportError(f"quality gate: {e}") from None
            drop = r_ref["model"]["psnr"] - r_eng["model"]["psnr"]
            rows[s.name] = {"n": r_eng["n"], "psnr_fp32": round(r_ref["model"]["psnr"], 4),
                            "psnr_engine": round(r_eng["model"]["psnr"], 4), "drop_db": round(drop, 4),
                            "passed": bool(drop <= limit_db)}
    return {"passed": all(r["passed"] for r in rows.values()), "max_drop_db": limit_db, "sets": rows,
            "data": str(data_root), "limit": limit,
            "gate": f"PSNR vs ground truth at most {limit_db:g} dB below the PyTorch FP32 model on every set"}


@dataclass
class PrecisionPlan:
    """What :func:`anyir_edge.export.export` needs for a reduced-precision engine."""

    precision: str = "fp32"
    calib: str | None = None
    search: bool = True
    quality_data: str | None = None
    quality_sets: tuple[str, ...] = QUALITY_SETS
    quality_limit: int | None = None
    calib_size: int = CALIB_SIZE
    calib_max_images: int | None = CALIB_MAX_IMAGES
    samples: list = field(default_factory=list, repr=False)


def file_size_mb(path) -> float:
    p = Path(path)
    files = [p] + ([p.with_suffix(".bin")] if p.suffix == ".xml" else [])
    return sum(os.path.getsize(f) for f in files if f.exists()) / 2**20
