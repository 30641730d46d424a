"""OpenVINO FP16 / INT8 IRs: NNCF when installed and good enough, else the Q/DQ graph on the convolutions."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ...artifact import PREFIX as META_PREFIX
from ..formats import ExportError
from .int8 import int8_rule_float_nodes, quantize_int8
from .search import DEFAULT_MAX_EVALS, ParityProbe

# OpenVINO 2026.4's CPU plugin does not compile onnxruntime's Q/DQ MatMul (activation x activation
# in the attention): "Check 'any_of(scale.size(), OC, 1U)' failed" (dnnl_postops_composer.cpp)
OPENVINO_INT8_OP_TYPES = ("Conv",)


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
    from ..openvino_export import convert

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
