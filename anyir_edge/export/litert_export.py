"""PyTorch -> LiteRT (``.tflite``) for phones, with litert-torch.

litert-torch converts static shapes only, so the network (its architecture's *mobile* deploy
form, :func:`anyir_edge.export.mobile_export.mobile_module`, batch 1) is converted once per
size into one signature each (:func:`anyir_edge.artifact.sized_entry_name`); the weights
are shared between them.  The engine contract's metadata are written into the flatbuffer
(:func:`anyir_edge.artifact.write_tflite`).
"""
from __future__ import annotations

import collections
import importlib.metadata
import os
import warnings

import torch

from .. import artifact
from ..errors import first_line
from .formats import ExportError

#: the phone target the architectures build their mobile form for (``Architecture.deploy_copy``)
TARGET = "litert"
#: what --to litert imports (the converter and the runtime that verifies it)
MODULES = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}


def missing() -> list[str]:
    import importlib.util

    return [pkg for mod, pkg in MODULES.items() if importlib.util.find_spec(mod) is None]


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


#: the input that carries the activation, for ops where it is not the first (TRANSPOSE_CONV's
#: inputs are the output shape, the weights, then the activation)
_DATA_INPUT = {"TRANSPOSE_CONV": 2}


def op_report(model: bytes) -> dict:
    """Per signature, the operators of its subgraph (builtin name -> count) and those that compute
    on INT8 activations (``int8_ops``), and any custom op (which a stock LiteRT runtime on a
    phone would not have)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    m = schema.Model.GetRootAs(model, 0)
    codes = []
    for i in range(m.OperatorCodesLength()):
        c = m.OperatorCodes(i)
        code = max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
        codes.append(c.CustomCode().decode() if c.CustomCode() else names.get(code, str(code)))
    signatures, ops, int8_ops = {}, {}, {}
    for i in range(m.SignatureDefsLength()):
        sd = m.SignatureDefs(i)
        g = m.Subgraphs(sd.SubgraphIndex())
        count, int8 = collections.Counter(), collections.Counter()
        for j in range(g.OperatorsLength()):
            op = g.Operators(j)
            name = codes[op.OpcodeIndex()]
            count[name] += 1
            k = _DATA_INPUT.get(name, 0)
            if name != "QUANTIZE" and op.InputsLength() > k and op.Inputs(k) >= 0 \
                    and g.Tensors(op.Inputs(k)).Type() == schema.TensorType.INT8:
                int8[name] += 1
        key = sd.SignatureKey().decode()
        signatures[key] = [int(v) for v in g.Tensors(g.Inputs(0)).ShapeAsNumpy()]
        ops[key] = dict(sorted(count.items()))
        int8_ops[key] = dict(sorted(int8.items()))
    custom = sorted({c for c in codes if c not in names.values()})
    return {"signatures": signatures, "ops": ops, "int8_ops": int8_ops, "custom_ops": custom}


#: the TFLite ops whose weights ``--half`` stores in FP16 (ai-edge-quantizer's float casting:
#: every weight-carrying op this network has)
FP16_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "FULLY_CONNECTED")


def fp16_weights(model: bytes) -> bytes:
    """``model`` with the weights of :data:`FP16_WEIGHT_OPS` stored in FP16 (ai-edge-quantizer's
    float casting); the graph dequantizes them to FP32, so activations and I/O stay FP32."""
    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise ExportError("--to litert --half needs ai-edge-quantizer: pip install anyir-edge[litert]") from None
    config = qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
    q = quantizer.Quantizer(model)
    for op in FP16_WEIGHT_OPS:
        q.update_quantization_recipe(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                                     op_config=config, algorithm_key="float_casting")
    try:
        return bytes(q.quantize().quantized_model)
    except Exception as e:
        raise ExportError(f"LiteRT FP16 weight conversion failed ({first_line(e)})") from None


def convert_signatures(entries: dict, quant_config=None) -> tuple[bytes, dict]:
    """The ``.tflite`` bytes (no metadata yet) with one signature per ``entries`` item (name ->
    (module, example input)), ``quant_config``: litert-torch's (a pt2e-quantized module's q/dq
    pairs become INT8 ops), and its :func:`op_report`; a conversion that leaves custom ops is refused."""
    from .mobile_export import quiet

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet():  # its import brings TensorFlow's and torchao's log lines
        try:
            import litert_torch
        except ImportError:
            raise ExportError("--to litert needs litert-torch: pip install anyir-edge[litert]") from None
    litert_torch.config.show_progress = False
    # JAX (imported by litert-torch) warns at every later fork, e.g. a worker pool: nothing here forks into JAX
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    conv = litert_torch
    for name, (module, x) in entries.items():
        conv = conv.signature(name, module, (x,))
    with quiet():
        try:
            buf = conv.convert(quant_config=quant_config).model_content()
        except Exception as e:
            raise ExportError(f"LiteRT conversion failed ({first_line(e)})") from None
    report = op_report(buf)
    if report["custom_ops"]:
        raise ExportError(f"LiteRT conversion left custom ops a phone runtime lacks: {', '.join(report['custom_ops'])}")
    return buf, report


def convert(model, fft: str, sizes, meta: dict[str, str], half: bool = False,
            log=lambda s: None) -> tuple[bytes, dict]:
    """The ``.tflite`` bytes of ``model`` (a RestorationNet) with one signature per (H, W) in
    ``sizes`` (``half``: FP16 weights, :func:`fp16_weights`), and its :func:`op_report`."""
    from .mobile_export import mobile_module, quiet

    module, form = mobile_module(model, fft, target=TARGET)
    entries = {artifact.sized_entry_name(h, w): (module, torch.rand(1, model.in_channels, h, w)) for h, w in sizes}
    log(f"converting the {form} form with litert-torch ({len(sizes)} signature(s); about a minute each) ...")
    buf, report = convert_signatures(entries)
    if half:
        log("storing the convolution and linear weights in FP16 (ai-edge-quantizer float casting) ...")
        with quiet():
            buf = fp16_weights(buf)
        report = op_report(buf)
    report["deploy_form"] = form
    return artifact.write_tflite(buf, meta), report
