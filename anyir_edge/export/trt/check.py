"""The TensorRT compatibility check that runs anywhere: the ONNX graph against the operator table of a
TensorRT version (``anyir_edge/export/data/trt_onnx_ops.json``) and the build settings."""
from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


from ...artifact import INPUT_NAME, OUTPUT_NAME
from ..formats import ExportError
from .settings import TrtSettings, validate_settings


OPS_TABLE = Path(__file__).resolve().parent.parent / "data" / "trt_onnx_ops.json"


# ============================================================== operator table
@functools.lru_cache(maxsize=1)
def load_op_table() -> dict:
    with open(OPS_TABLE) as f:
        return json.load(f)


def _version_tuple(v: str) -> tuple[int, int | None]:
    parts = str(v).strip().lower().lstrip("v").split(".")
    try:
        major = int(parts[0])
    except ValueError:
        raise ExportError(f"--trt-version {v!r}: expected e.g. 10.x, 10.8 or 11.2") from None
    minor = None
    if len(parts) > 1 and parts[1] not in ("x", "*", ""):
        try:
            minor = int(parts[1])
        except ValueError:
            raise ExportError(f"--trt-version {v!r}: expected e.g. 10.x, 10.8 or 11.2") from None
    return major, minor


def resolve_version(requested: str | None = None) -> tuple[str, dict]:
    """The table entry for a TensorRT version ("10.x", "10.8.0", "11", "11.2" ...), flattened:
    returns (key, {"supported": set, "unsupported": set, "opset": (lo, hi), "since": {...}, ...})."""
    table = load_op_table()
    versions = table["versions"]
    req = requested or table["default"]
    major, minor = _version_tuple(req)
    cands = []
    for key in versions:
        kmaj, kmin = _version_tuple(key)
        if kmaj != major:
            continue
        if minor is None or kmin is None or kmin <= minor:
            cands.append((kmin if kmin is not None else -1, key))
    if not cands:
        known = ", ".join(versions)
        raise ExportError(f"--trt-version {req}: no operator table for TensorRT {major}.x (known: {known})")
    key = max(cands)[1]
    return key, _flatten(versions, key)


def _flatten(versions: dict, key: str) -> dict:
    v = versions[key]
    if v.get("base"):
        base = _flatten(versions, v["base"])
        sup = (base["supported"] | set(v.get("add", []))) - set(v.get("remove", []))
        unsup = (base["unsupported"] - set(v.get("add", []))) | set(v.get("remove", []))
        since = dict(base["since"])
        notes = {**base.get("notes", {}), **v.get("notes", {})}
    else:
        sup, unsup, since, notes = set(v["supported"]), set(v["unsupported"]), dict(v.get("since", {})), dict(v.get("notes", {}))
    return {"key": key, "supported": sup, "unsupported": unsup, "opset": tuple(v["opset"]), "since": since,
            "notes": notes, "weak_typing": v.get("weak_typing", True), "source": v.get("source", [])}


# =================================================================== the check
@dataclass
class Problem:
    level: str      # "error" | "warning" | "info"
    message: str

    def line(self) -> str:
        return f"{self.level}: {self.message}"


@dataclass
class CheckReport:
    onnx: str
    trt_version: str            # the table entry used, e.g. "10.x"
    requested: str
    opset: int | None
    nodes: int
    op_counts: dict[str, int]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.level == "error" for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    def summary(self) -> str:
        if self.ok:
            extra = sum(p.level == "warning" for p in self.problems)
            warn = f", {extra} warning(s)" if extra else ""
            return (f"{Path(self.onnx).name}: compatible with TensorRT {self.trt_version} ({self.nodes} nodes, "
                    f"{len(self.op_counts)} op types, opset {self.opset}{warn})")
        return (f"{Path(self.onnx).name}: NOT compatible with TensorRT {self.trt_version}: "
                f"{len(self.errors)} problem(s)")


_CONST_PRODUCERS = ("Constant",)
_INT64_SHAPE_OPS = ("Shape", "Range", "ConstantOfShape", "Size")
_RESIZE_CTM = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners")
_RESIZE_NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


def check_onnx(model, trt_version: str | None = None, settings: TrtSettings | None = None,
               size_multiple: int | None = None, precision_check: bool = True) -> CheckReport:
    """TensorRT compatibility of an ONNX graph (a path or a ModelProto), without TensorRT.

    Every node's op type against the operator table of ``trt_version`` (DFT is flagged before
    11.2), the opset range, the attribute restrictions that matter for AnyIR-like graphs
    (LayerNormalization outputs, Reduce axes, Resize modes, Squeeze/Unsqueeze axes), tensor
    types, INT64 shape arithmetic (info only) and the input's dynamic dims against the
    optimization profile of ``settings`` (validated with the graph's size multiple).
    """
    import onnx

    path = "<model>"
    if not isinstance(model, onnx.ModelProto):
        path = str(model)
        try:
            model = onnx.load(path, load_external_data=False)
        except Exception as e:
            raise ExportError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    requested = trt_version or load_op_table()["default"]
    key, table = resolve_version(requested)
    probs: list[Problem] = []

    def add(level: str, message: str) -> None:
        probs.append(Problem(level, message))

    opset = _check_opset(model, key, table, add)
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in model.graph.node)
    _check_ops(counts, key, table, requested, add)
    _check_attributes(model.graph, add)
    _check_types(model.graph, counts, add)
    _check_io(model, settings, size_multiple, add)
    if precision_check and settings is not None and (settings.fp16 or settings.int8) and not table["weak_typing"]:
        _check_typing(model.graph, settings, key, add)
    return CheckReport(path, key, requested, opset, len(model.graph.node), dict(counts), probs)


def _check_opset(model, key: str, table: dict, add) -> int | None:
    opset = None
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            opset = int(o.version)
        else:
            add("error", f"opset domain {o.domain!r} (custom ops) needs a TensorRT plugin")
    lo, hi = table["opset"]
    if opset is None:
        add("error", "no default-domain opset in the model")
    elif not lo <= opset <= hi:
        add("error", f"opset {opset} is outside TensorRT {key}'s range {lo}-{hi}")
    return opset


def _check_ops(counts: Counter, key: str, table: dict, requested: str, add) -> None:
    """Every op type against the table (``since`` versions against the requested one)."""
    req_major, req_minor = _version_tuple(requested)
    for op, k in sorted(counts.items()):
        if op == "DFT":
            if op in table["supported"]:
                add("info", f"DFT x{k}: imported by TensorRT {key} through {table['notes'].get('DFT', 'a plugin')}")
            else:
                add("error", f"DFT x{k}: ONNX DFT is not supported by TensorRT before 11.2 (table {key}); "
                             f"export with --fft fold or --fft matmul")
            continue
        if "::" in op:
            continue  # reported with its domain by _check_opset
        if op in table["unsupported"]:
            add("error", f"{op} x{k}: not supported by TensorRT {key} (onnx-tensorrt operator table)")
        elif op not in table["supported"]:
            add("error", f"{op} x{k}: not in TensorRT {key}'s operator table")
        elif op in table["since"]:
            need = table["since"][op]
            nmaj, nmin = _version_tuple(need)
            if req_minor is None:
                add("warning", f"{op} x{k}: needs TensorRT >= {need}")
            elif (req_major, req_minor) < (nmaj, nmin or 0):
                add("error", f"{op} x{k}: needs TensorRT >= {need}, targeted {requested}")


def _check_attributes(g, add) -> None:
    """Attribute and constant-input restrictions, each kind reported once."""
    import onnx

    consts = {i.name for i in g.initializer}
    consts |= {o for n in g.node if n.op_type in _CONST_PRODUCERS for o in n.output}
    shown: Counter = Counter()

    def once(kind, msg, level="error"):
        shown[kind] += 1
        if shown[kind] == 1:
            add(level, msg)

    for n in g.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "LayerNormalization" and any(o for o in n.output[1:]):
            once("ln", f"LayerNormalization {n.name}: only the first output Y is supported by TensorRT")
        elif n.op_type.startswith("Reduce") and len(n.input) > 1 and n.input[1] and n.input[1] not in consts:
            once("reduce", f"{n.op_type} {n.name}: axes must be an initializer for TensorRT")
        elif n.op_type in ("Squeeze", "Unsqueeze") and len(n.input) > 1 and n.input[1] and n.input[1] not in consts:
            once("squeeze", f"{n.op_type} {n.name}: axes are not a constant (TensorRT needs them resolvable "
                            "to a constant)", "warning")
        elif n.op_type == "Resize":
            mode = _s(attrs.get("mode", "nearest"))
            ctm = _s(attrs.get("coordinate_transformation_mode", "half_pixel"))
            if mode not in ("nearest", "linear"):
                once("resize", f"Resize {n.name}: mode {mode!r} unsupported (nearest, linear)")
            if ctm not in _RESIZE_CTM:
                once("resize_ctm", f"Resize {n.name}: coordinate_transformation_mode {ctm!r} unsupported")
            if mode == "nearest" and _s(attrs.get("nearest_mode", "round_prefer_floor")) not in _RESIZE_NEAREST:
                once("resize_nm", f"Resize {n.name}: nearest_mode unsupported")
            if int(attrs.get("antialias", 0)):
                once("resize_aa", f"Resize {n.name}: antialiasing is not supported by TensorRT")
        elif n.op_type in ("Loop", "If", "Scan"):
            once("subgraph", f"{n.op_type} {n.name}: subgraphs are not checked node by node", "warning")


def _check_types(g, counts: Counter, add) -> None:
    import onnx

    TP = onnx.TensorProto
    typed = list(g.input) + list(g.output) + list(g.value_info)
    if any(v.type.tensor_type.elem_type == TP.STRING for v in typed):
        add("error", "STRING tensors are not supported by TensorRT")
    doubles = [v.name for v in typed if v.type.tensor_type.elem_type == TP.DOUBLE]
    doubles += [i.name for i in g.initializer if i.data_type == TP.DOUBLE]
    if doubles:
        add("warning", f"{len(doubles)} DOUBLE tensor(s): TensorRT casts them to FLOAT (clamping to +-FLT_MAX)")
    int64 = sum(counts.get(op, 0) for op in _INT64_SHAPE_OPS)
    int64 += sum(1 for n in g.node if n.op_type == "Cast"
                 and any(a.name == "to" and a.i == TP.INT64 for a in n.attribute))
    if int64:
        add("info", f"{int64} node(s) of INT64 shape arithmetic (Shape/Range/Cast...): TensorRT 10 supports INT64; "
                    "no action needed")


def _check_io(model, settings: TrtSettings | None, size_multiple: int | None, add) -> None:
    """The contract's input / output names and the input's dims against the optimization profile."""
    g = model.graph
    meta = {p.key: p.value for p in model.metadata_props}
    m = int(size_multiple or meta.get("anyir_edge.size_multiple", 8))
    inputs = [i for i in g.input if i.name not in {x.name for x in g.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        add("error", f"expected one input named {INPUT_NAME!r}, found {[i.name for i in inputs]}")
    if [o.name for o in g.output] != [OUTPUT_NAME]:
        add("error", f"expected one output named {OUTPUT_NAME!r}, found {[o.name for o in g.output]}")
    try:
        s = validate_settings(settings or TrtSettings(), m)
    except ExportError as e:
        add("error", f"build settings: {e}")
        return
    if not inputs:
        return
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        add("error", f"input {inputs[0].name!r} has rank {len(dims)}, expected 4 (NCHW)")
        return
    for i, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            lo_, opt_, hi_ = s.min_shape[i], s.opt_shape[i], s.max_shape[i]
            if not lo_ == opt_ == hi_ == d.dim_value:
                add("error", f"input dim {i} is fixed at {d.dim_value} but the profile asks "
                             f"{lo_}/{opt_}/{hi_} (min/opt/max)")


def _check_typing(g, settings: TrtSettings, key: str, add) -> None:
    """Strongly typed TensorRT (11.x): the precision must be in the graph."""
    import onnx

    typed = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node) or any(
        t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer)
    if typed:
        add("info", f"typed graph ({'Q/DQ' if settings.int8 else 'float16'}): a strongly typed TensorRT {key} build")
    else:
        add("info", f"--{settings.precision} on TensorRT {key}: builder precision flags were removed (strong typing); "
                    "anyir-export writes the precision into the graph first (FP16 graph or INT8 Q/DQ); a plain "
                    "FP32 graph built elsewhere stays FP32")


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


