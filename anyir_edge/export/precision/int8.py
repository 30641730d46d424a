"""INT8 ONNX: static Q/DQ with 7-bit weights, the float-by-rule nodes, the search and the dynamic fallback."""
from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ...artifact import PREFIX as META_PREFIX
from ..onnx_export import quiet_logger
from .graph import _ensure_names, _stamp
from .search import DEFAULT_MAX_EVALS, ParityProbe, bisect_keep

INT8_OP_TYPES = ("Conv", "MatMul")
MAX_FLOAT_FRACTION = 0.5   # an INT8 engine leaving more of its candidates in float is not worth shipping


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


# ops that only move or select data (the in-graph padding's gathers and the crop's slice)
_MOVES = ("Gather", "Slice", "Pad", "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def int8_rule_float_nodes(model, op_types=INT8_OP_TYPES) -> dict[str, str]:
    """Compute nodes (``op_types``) that static INT8 leaves in float by rule, name -> why.

    - the node reading the image (a graph input, directly or through the in-graph padding's
      data movement): hazy and dark inputs are low-contrast, and the network amplifies the
      error of quantizing them to the calibration range's grid (on AnyIR-tiny, quantizing only
      the first convolution costs a hazy photo 25 dB of parity);
    - the node writing the output (its result reaches a graph output directly or through one Add,
      the global residual, and the in-graph crop): its error lands in the image unfiltered;
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

    def reaches_output(name: str, adds: int = 1) -> bool:
        """``name`` is a graph output, or becomes one through data movement (the crop) and at
        most ``adds`` Add nodes (the global residual)."""
        if name in outputs:
            return True
        for c in consumers.get(name, []):
            if c.op_type in _MOVES and c.input and c.input[0] == name and any(reaches_output(o, adds) for o in c.output):
                return True
            if c.op_type == "Add" and adds and any(reaches_output(o, adds - 1) for o in c.output):
                return True
        return False

    def writes_output(n) -> bool:
        return any(reaches_output(o) for o in n.output)

    def from_input(name: str) -> bool:
        """``name`` is a graph input, or data moved from one (the in-graph padding's gathers)."""
        if name in inputs:
            return True
        prod = producers.get(name)
        return prod is not None and prod.op_type in _MOVES and bool(prod.input) and from_input(prod.input[0])

    rules = {}
    for n in model.graph.node:
        if n.op_type not in op_types or not n.input:
            continue
        act = n.input[0]
        prod = producers.get(act)
        if from_input(act):
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
    ``rules``: leave :func:`int8_rule_float_nodes` in float from the start.

    Longer than the project's 80 lines on purpose: static quantization, the parity search and
    the dynamic fallback share one scratch folder, one calibration cache and the running list of
    excluded nodes through the nested ``static`` / ``dynamic`` helpers; split apart they would
    pass that state around for no gain in clarity."""
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
