"""TensorRT 10.x precision constraints: the layers an FP16 / INT8 build keeps in FP32."""
from __future__ import annotations





# ===================================================== precision constraints
FP32_LAYER_TYPES = frozenset({"NORMALIZATION", "SOFTMAX", "REDUCE"})
# ONNX node names (the parser names layers after them) whose math overflows in FP16 in
# restoration networks: LayerNorm (also when decomposed), softmax, reductions, and the
# squares / roots of variance-style statistics.
FP32_NAME_HINTS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2", "ReduceSum", "/Pow", "/Sqrt")
NEVER_FP32_TYPES = frozenset({"CONSTANT", "SHAPE", "SHUFFLE", "CAST", "ASSERTION", "CONDITION", "IDENTITY",
                              "GATHER", "SLICE", "CONCATENATION", "FILL"})


def keep_fp32(layer_name: str, layer_type: str) -> bool:
    """Whether a TensorRT layer must run in FP32 in an FP16/INT8 build (pure function of the
    layer's name and its ``trt.LayerType`` member name)."""
    t = str(layer_type).rsplit(".", 1)[-1].upper()
    if t in NEVER_FP32_TYPES:
        return False
    if t in FP32_LAYER_TYPES:
        return True
    return any(h in str(layer_name) for h in FP32_NAME_HINTS)


def apply_precision_constraints(network, trt) -> list[str]:
    """Force :func:`keep_fp32` layers of a parsed network to FP32 (precision and float outputs)."""
    forced = []
    floats = (trt.float32, trt.float16)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not keep_fp32(layer.name, getattr(layer.type, "name", str(layer.type))):
            continue
        outs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype in floats]
        if not outs:
            continue
        layer.precision = trt.float32
        for j in outs:
            layer.set_output_type(j, trt.float32)
        forced.append(layer.name)
    return forced


