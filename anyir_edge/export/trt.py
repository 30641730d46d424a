"""TensorRT for AnyIR: build settings, a compatibility check that runs anywhere, the engine
builder (TensorRT 10.x Python API) and the INT8 entropy calibrator.

Nothing here imports ``tensorrt`` at module level: the settings validation, the ONNX
compatibility check (:func:`check_onnx`), the FP32-layer selection (:func:`keep_fp32`), the
calibration feeder (:class:`CalibrationFeeder`, fed by :mod:`anyir_edge.export.calibration`) and the engine/environment
comparison (:func:`engine_compatibility`) are pure Python and are tested on machines without
TensorRT or a GPU.  :func:`build_engine` and the calibrator class need TensorRT 10.x and a
CUDA build of torch (device buffers are torch CUDA tensors).

API used (TensorRT 10.x Python, looked up in NVIDIA's API reference and migration guides):
``trt.Logger``, ``trt.Builder``, ``builder.create_network(0)`` (10.0+: networks are always
explicit batch, the EXPLICIT_BATCH flag is deprecated and ignored), ``trt.OnnxParser(...).parse``,
``builder.create_builder_config()``, ``config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE,
bytes)``, ``builder.create_optimization_profile()`` / ``profile.set_shape`` /
``config.add_optimization_profile``, ``config.create_timing_cache`` / ``set_timing_cache`` /
``get_timing_cache().serialize()``, ``trt.BuilderFlag.FP16 / INT8 / OBEY_PRECISION_CONSTRAINTS``,
``layer.precision`` / ``layer.set_output_type``, ``trt.IInt8EntropyCalibrator2``,
``config.int8_calibrator`` / ``config.set_calibration_profile``,
``builder.build_serialized_network``.

TensorRT 11.x removed weak typing: ``BuilderFlag.FP16``/``INT8``, the precision-constraint
flags and ``IBuilderConfig.int8_calibrator`` are gone (every network is strongly typed; FP16 via
a typed graph such as ModelOpt AutoCast writes, INT8 via explicit Q/DQ nodes).  Implicit INT8
calibration (this module's calibrator) is already deprecated in 10.x.  On TensorRT 11 the
exporter therefore puts the precision into the ONNX graph first (:func:`typed_onnx`): FP16 is
the ONNX Runtime FP16 graph (float16 weights and activations, LayerNorm, softmax, reductions
and the q/k normalisation kept in FP32 with Casts: the same block list as the 10.x layer
constraints), INT8 is the ONNX Runtime static Q/DQ graph with symmetric INT8 activations
(TensorRT accepts only zero points of 0), Conv only, calibrated on the same degraded crops.
The builder then creates the network with ``1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)``
(required for typed graphs on 10.x, accepted and ignored on 11.x) and sets no precision flag.
Not verified on a GPU.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import artifact
from ..artifact import INPUT_NAME, OUTPUT_NAME, read_sidecar, sidecar_path  # noqa: F401  (the contract's)
from ..fsutil import atomic_write
from ..runtime.backends.tensorrt_backend import current_environment, engine_compatibility  # noqa: F401
from .formats import ExportError

OPS_TABLE = Path(__file__).resolve().parent / "data" / "trt_onnx_ops.json"
DEFAULT_OPT_HW = 512
DEFAULT_MAX_HW = 1024
DEFAULT_WORKSPACE_MB = 4096
SIDECAR = artifact.SIDECAR_SUFFIX  # NAME.trt.json beside NAME.engine: build settings + environment + parity
CALIB_CACHE = ".calib.cache"  # NAME.calib.cache: the INT8 calibration cache


# ======================================================================= settings
Shape = tuple[int, int, int, int]


def parse_shape(text, flag: str = "shape") -> Shape:
    """``"1x3x256x256"`` (or a 4-sequence) -> (N, C, H, W); one-line ExportError otherwise."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).lower().replace("*", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ExportError(f"{flag} {text!r}: expected NxCxHxW, e.g. 1x3x512x512") from None
    if len(dims) != 4:
        raise ExportError(f"{flag} {text!r}: expected 4 dimensions NxCxHxW, got {len(dims)}")
    return dims  # type: ignore[return-value]


@dataclass
class TrtSettings:
    """Everything that shapes a TensorRT build (and the onnxruntime TensorRT provider)."""

    fp16: bool = False
    int8: bool = False
    calib: str | None = None                 # folder of calibration images (--int8; None: built-in crops)
    min_shape: Shape | None = None           # None: 1x3xMxM, M = the model's size multiple
    opt_shape: Shape | None = None           # None: 1x3x512x512
    max_shape: Shape | None = None           # None: 1x3x1024x1024
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: str | None = None          # file, read if present and (re)written after the build
    engine_cache_dir: str | None = None      # onnxruntime's TensorRT provider engine cache
    device_id: int = 0
    calib_max_images: int = 64               # images, each degraded every way (anyir_edge.export.calibration)

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"

    def resolved(self, size_multiple: int = 8) -> "TrtSettings":
        m = int(size_multiple)
        out = TrtSettings(**asdict(self))
        out.min_shape = parse_shape(self.min_shape, "--min-shape") if self.min_shape else (1, 3, m, m)
        out.max_shape = (parse_shape(self.max_shape, "--max-shape") if self.max_shape
                         else (1, 3, DEFAULT_MAX_HW, DEFAULT_MAX_HW))
        if self.opt_shape:
            out.opt_shape = parse_shape(self.opt_shape, "--opt-shape")
        else:  # the default, kept inside a given min/max
            out.opt_shape = tuple(max(lo, min(d, hi)) for d, lo, hi in
                                  zip((1, 3, DEFAULT_OPT_HW, DEFAULT_OPT_HW), out.min_shape, out.max_shape))
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("min_shape", "opt_shape", "max_shape"):
            d[k] = list(d[k]) if d[k] else None
        d["precision"] = self.precision
        return d


def validate_settings(settings: TrtSettings, size_multiple: int = 8) -> TrtSettings:
    """Check a build's settings before any GPU work; returns them with defaults filled in.

    Shapes: NxCxHxW, C = 3, min <= opt <= max per dimension, H and W multiples of the model's
    size multiple.  INT8 with ``--calib``: a folder that exists, is readable and holds at least one
    readable image.  Raises :class:`ExportError` with every problem on one line.
    """
    m = int(size_multiple)
    s = settings.resolved(m)
    problems = []
    shapes = {"--min-shape": s.min_shape, "--opt-shape": s.opt_shape, "--max-shape": s.max_shape}
    for flag, sh in shapes.items():
        txt = "x".join(map(str, sh))
        if any(d < 1 for d in sh):
            problems.append(f"{flag} {txt}: every dimension must be >= 1")
        if sh[1] != 3:
            problems.append(f"{flag} {txt}: AnyIR takes 3 channels (NCHW RGB), not {sh[1]}")
        if sh[2] % m or sh[3] % m:
            problems.append(f"{flag} {txt}: H and W must be multiples of the model's size multiple {m}")
    names = ("N", "C", "H", "W")
    for i, n in enumerate(names):
        lo, opt, hi = s.min_shape[i], s.opt_shape[i], s.max_shape[i]
        if not lo <= opt <= hi:
            problems.append(f"profile {n}: need min <= opt <= max, got {lo} / {opt} / {hi}")
    if int(s.workspace_mb) < 1:
        problems.append(f"--workspace {s.workspace_mb}: must be >= 1 MB")
    if s.calib and not s.int8:
        problems.append("--calib is only used with --int8")
    if s.int8:
        from .calibration import calib_problems

        problems.extend(calib_problems(s.calib))
    if s.timing_cache:
        tc = Path(s.timing_cache)
        if tc.exists() and (not tc.is_file() or not os.access(tc, os.R_OK)):
            problems.append(f"--timing-cache {tc}: not a readable file")
        elif not tc.parent.is_dir():
            problems.append(f"--timing-cache {tc}: folder {tc.parent} does not exist")
    if problems:
        raise ExportError("; ".join(problems))
    return s


def ort_provider_options(settings: TrtSettings | None, device_id: int | None = None,
                         input_name: str = INPUT_NAME) -> dict[str, dict]:
    """Options for onnxruntime's TensorRT and CUDA execution providers from the same settings.

    Option names from onnxruntime's TensorRT EP documentation (trt_fp16_enable,
    trt_max_workspace_size, trt_engine_cache_enable/_path, trt_timing_cache_enable/_path,
    trt_profile_{min,opt,max}_shapes "name:NxCxHxW").  INT8 is not passed on: the EP needs its
    own calibration table, which this toolkit does not produce.  The CUDA EP has no precision
    switch; it gets the device.
    """
    s = settings or TrtSettings()
    dev = int(s.device_id if device_id is None else device_id)
    trt = {"device_id": dev, "trt_fp16_enable": bool(s.fp16), "trt_max_workspace_size": int(s.workspace_mb) << 20}
    if s.engine_cache_dir:
        trt["trt_engine_cache_enable"] = True
        trt["trt_engine_cache_path"] = str(s.engine_cache_dir)
    if s.timing_cache:
        trt["trt_timing_cache_enable"] = True
        trt["trt_timing_cache_path"] = str(Path(s.timing_cache).parent)
    if s.min_shape and s.opt_shape and s.max_shape:
        for key, sh in (("min", s.min_shape), ("opt", s.opt_shape), ("max", s.max_shape)):
            trt[f"trt_profile_{key}_shapes"] = f"{input_name}:" + "x".join(str(d) for d in parse_shape(sh))
    return {"TensorrtExecutionProvider": trt, "CUDAExecutionProvider": {"device_id": dev}}


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
    g = model.graph
    probs: list[Problem] = []
    err = lambda m: probs.append(Problem("error", m))  # noqa: E731
    warn = lambda m: probs.append(Problem("warning", m))  # noqa: E731
    info = lambda m: probs.append(Problem("info", m))  # noqa: E731

    # ---- opsets
    opset = None
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            opset = int(o.version)
        else:
            err(f"opset domain {o.domain!r} (custom ops) needs a TensorRT plugin")
    lo, hi = table["opset"]
    if opset is None:
        err("no default-domain opset in the model")
    elif not lo <= opset <= hi:
        err(f"opset {opset} is outside TensorRT {key}'s range {lo}-{hi}")

    # ---- operators
    counts = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in g.node)
    req_major, req_minor = _version_tuple(requested)
    for op, k in sorted(counts.items()):
        if op == "DFT":
            if op in table["supported"]:
                info(f"DFT x{k}: imported by TensorRT {key} through {table['notes'].get('DFT', 'a plugin')}")
            else:
                err(f"DFT x{k}: ONNX DFT is not supported by TensorRT before 11.2 (table {key}); "
                    f"export with --fft fold or --fft matmul")
            continue
        if "::" in op:
            continue  # reported with its domain above
        if op in table["unsupported"]:
            err(f"{op} x{k}: not supported by TensorRT {key} (onnx-tensorrt operator table)")
        elif op not in table["supported"]:
            err(f"{op} x{k}: not in TensorRT {key}'s operator table")
        elif op in table["since"]:
            need = table["since"][op]
            nmaj, nmin = _version_tuple(need)
            if req_minor is None:
                warn(f"{op} x{k}: needs TensorRT >= {need}")
            elif (req_major, req_minor) < (nmaj, nmin or 0):
                err(f"{op} x{k}: needs TensorRT >= {need}, targeted {requested}")

    # ---- attribute / input restrictions
    consts = {i.name for i in g.initializer}
    consts |= {o for n in g.node if n.op_type in _CONST_PRODUCERS for o in n.output}
    shown: Counter = Counter()

    def once(kind, msg, level="error"):
        shown[kind] += 1
        if shown[kind] == 1:
            probs.append(Problem(level, msg))

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

    # ---- tensor types
    TP = onnx.TensorProto
    typed = list(g.input) + list(g.output) + list(g.value_info)
    if any(v.type.tensor_type.elem_type == TP.STRING for v in typed):
        err("STRING tensors are not supported by TensorRT")
    doubles = [v.name for v in typed if v.type.tensor_type.elem_type == TP.DOUBLE]
    doubles += [i.name for i in g.initializer if i.data_type == TP.DOUBLE]
    if doubles:
        warn(f"{len(doubles)} DOUBLE tensor(s): TensorRT casts them to FLOAT (clamping to +-FLT_MAX)")
    int64 = sum(counts.get(op, 0) for op in _INT64_SHAPE_OPS)
    int64 += sum(1 for n in g.node if n.op_type == "Cast"
                 and any(a.name == "to" and a.i == TP.INT64 for a in n.attribute))
    if int64:
        info(f"{int64} node(s) of INT64 shape arithmetic (Shape/Range/Cast...): TensorRT 10 supports INT64; "
             "no action needed")

    # ---- I/O and the optimization profile
    meta = {p.key: p.value for p in model.metadata_props}
    m = int(size_multiple or meta.get("anyir_edge.size_multiple", 8))
    inputs = [i for i in g.input if i.name not in {x.name for x in g.initializer}]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        err(f"expected one input named {INPUT_NAME!r}, found {[i.name for i in inputs]}")
    if [o.name for o in g.output] != [OUTPUT_NAME]:
        err(f"expected one output named {OUTPUT_NAME!r}, found {[o.name for o in g.output]}")
    try:
        s = validate_settings(settings or TrtSettings(), m)
    except ExportError as e:
        err(f"build settings: {e}")
        s = None
    if inputs and s is not None:
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != 4:
            err(f"input {inputs[0].name!r} has rank {len(dims)}, expected 4 (NCHW)")
        else:
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value > 0:
                    lo_, opt_, hi_ = s.min_shape[i], s.opt_shape[i], s.max_shape[i]
                    if not lo_ == opt_ == hi_ == d.dim_value:
                        err(f"input dim {i} is fixed at {d.dim_value} but the profile asks "
                            f"{lo_}/{opt_}/{hi_} (min/opt/max)")
    if precision_check and settings is not None and (settings.fp16 or settings.int8) and not table["weak_typing"]:
        typed = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node) or any(
            t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer)
        if typed:
            info(f"typed graph ({'Q/DQ' if settings.int8 else 'float16'}): a strongly typed TensorRT {key} build")
        else:
            info(f"--{settings.precision} on TensorRT {key}: builder precision flags were removed (strong typing); "
                 "anyir-export writes the precision into the graph first (FP16 graph or INT8 Q/DQ); a plain "
                 "FP32 graph built elsewhere stays FP32")
    return CheckReport(path, key, requested, opset, len(g.node), dict(counts), probs)


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


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


# =============================================================== calibration
class CalibrationFeeder:
    """The pure-Python half of the INT8 calibrator: batches in, cache file in and out."""

    def __init__(self, batches: Iterable[np.ndarray], batch_size: int, cache_path):
        self._it = iter(batches)
        self.batch_size = int(batch_size)
        self.cache_path = Path(cache_path)
        self.served = 0

    def next_batch(self) -> np.ndarray | None:
        x = next(self._it, None)
        if x is not None:
            self.served += 1
        return x

    def read_cache(self) -> bytes | None:
        if self.cache_path.is_file():
            return self.cache_path.read_bytes()
        return None

    def write_cache(self, data) -> None:
        try:
            payload = memoryview(data).tobytes()
        except TypeError:
            payload = bytes(data)
        atomic_write(self.cache_path, payload)


def entropy_calibrator(trt, feeder: CalibrationFeeder, device: str = "cuda"):
    """A ``trt.IInt8EntropyCalibrator2`` fed by ``feeder``; batches are copied into a torch
    CUDA tensor that stays alive until the next batch (TensorRT reads it by pointer)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feeder = feeder
            self._buf = None

        def get_batch_size(self):  # deprecated in 10.x (no implicit batch) but still part of the interface
            return self.feeder.batch_size

        def get_batch(self, names):
            x = self.feeder.next_batch()
            if x is None:
                return None
            import torch

            self._buf = torch.from_numpy(x).to(device).contiguous()
            if self._buf.is_cuda:
                torch.cuda.current_stream(self._buf.device).synchronize()
            return [int(self._buf.data_ptr())]

        def read_calibration_cache(self):
            return self.feeder.read_cache()

        def write_calibration_cache(self, cache):
            self.feeder.write_cache(cache)

    return EntropyCalibrator()


# ================================================================= environment
def missing_requirements() -> list[str]:
    """What is missing on this machine for a TensorRT build ([] when TensorRT and a GPU are there)."""
    env = current_environment()
    out = []
    if not env["tensorrt"]:
        out.append("TensorRT is not installed")
    if not env["gpu"]:
        out.append("no CUDA GPU found (torch sees none)")
    return out


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError("TensorRT is not installed: pip install anyir-edge[gpu] on a machine with an NVIDIA GPU") from None
    return trt


# ==================================================================== building
def needs_typed_graph(settings: TrtSettings, trt_version: str | None) -> bool:
    """True when ``settings`` asks for FP16/INT8 from a TensorRT without weak typing (11.x and later)."""
    if settings.precision == "fp32" or not trt_version:
        return False
    return int(str(trt_version).split(".")[0]) >= 11


def typed_onnx(onnx_path, out_path, settings: TrtSettings, log=None) -> dict:
    """The FP32 ONNX with its precision written into the graph, for a strongly typed build:
    FP16 (float16 with the FP32 block list) or INT8 Q/DQ (symmetric, Conv only, calibrated on
    ``settings.calib`` degraded like every other calibration).  Returns the precision report."""
    from . import precision as P

    if settings.fp16:
        rep = P.convert_fp16(onnx_path, out_path, log=log)
        if log:
            log(f"FP16 graph for a strongly typed build: {len(rep['fp32_nodes'])} nodes kept in FP32")
        return rep
    samples, desc = P.calibration_samples(settings.calib, max_images=settings.calib_max_images, log=log)
    rep = P.quantize_int8(onnx_path, out_path, samples, op_types=("Conv",), symmetric_activations=True, reduce_range=False,
                          calib_desc=desc, log=log)
    if log:
        log(f"INT8 Q/DQ graph for a strongly typed build: {len(rep['quantized_nodes'])} Conv nodes quantized "
            f"(calibrated on {desc['samples']} samples from {desc['folder']})")
    return rep


def build_engine(onnx_path, engine_path, settings: TrtSettings, log=None, typed: bool = False) -> dict:
    """Build ``engine_path`` from ``onnx_path`` with TensorRT (10.x / 11.x API); returns build info.

    ``settings`` must be validated (:func:`validate_settings`).  Writes the engine, the timing
    cache (``settings.timing_cache``) and, for INT8 on 10.x, ``NAME.calib.cache`` beside the engine.
    ``typed``: ``onnx_path`` already carries the precision (:func:`typed_onnx`): a strongly typed
    network, no precision flags, no calibrator (the only way to FP16/INT8 on TensorRT 11).
    """
    log = log or (lambda m: None)
    trt = _import_tensorrt()
    major = int(str(trt.__version__).split(".")[0])
    if major >= 11 and (settings.fp16 or settings.int8) and not typed:
        raise ExportError(f"--{settings.precision} on TensorRT {trt.__version__} needs a typed graph (FP16 or Q/DQ "
                          "ONNX, see anyir_edge.export.trt.typed_onnx): 11.x removed the FP16/INT8 builder flags")
    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0  # TensorRT 10: always explicit batch (EXPLICIT_BATCH is ignored)
    if typed:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = [str(parser.get_error(i)).strip().splitlines()[0] for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT's ONNX parser rejects the graph: {'; '.join(errs[:3]) or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_mb) << 20)
    input_name = network.get_input(0).name
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, tuple(settings.min_shape), tuple(settings.opt_shape), tuple(settings.max_shape))
    config.add_optimization_profile(profile)
    tc_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache = config.create_timing_cache(tc_path.read_bytes() if tc_path and tc_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    forced: list[str] = []
    calib_cache = calib_desc = None
    if settings.fp16 and not typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.int8 and not typed:
        config.set_flag(trt.BuilderFlag.INT8)
        calib_cache = Path(engine_path).with_name(Path(engine_path).stem + CALIB_CACHE)
        from .calibration import calibration_batches, resolve_folder

        folder = resolve_folder(settings.calib, log)
        calib_desc = {"folder": str(folder), "max_images": settings.calib_max_images,
                      "degraded": "every anyir_edge.degradations.ORDER kind per image", "batch": settings.opt_shape[0]}
        feeder = CalibrationFeeder(calibration_batches(folder, settings.opt_shape, settings.calib_max_images),
                                   settings.opt_shape[0], calib_cache)
        config.int8_calibrator = entropy_calibrator(trt, feeder, device=f"cuda:{settings.device_id}")
        config.set_calibration_profile(profile)
    if (settings.fp16 or settings.int8) and not typed:
        forced = apply_precision_constraints(network, trt)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log(f"kept {len(forced)} layers (LayerNorm, softmax, reductions) in FP32")
    log(f"building the TensorRT {trt.__version__} engine ({settings.precision}) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT's builder failed (see its log above); try a larger --workspace or a smaller "
                          "--max-shape")
    atomic_write(Path(engine_path), memoryview(serialized).tobytes())
    if tc_path:
        atomic_write(tc_path, memoryview(config.get_timing_cache().serialize()).tobytes())
    return {
        "tensorrt": trt.__version__,
        "input": input_name,
        "profile": {"min": list(settings.min_shape), "opt": list(settings.opt_shape), "max": list(settings.max_shape)},
        "fp32_layers": len(forced),
        "precision_constraints": "obey" if forced else None,
        "typing": "strong (precision in the ONNX graph)" if typed else "weak (builder flags)",
        "timing_cache": str(tc_path) if tc_path else None,
        "calibration_cache": calib_cache.name if calib_cache else None,
        "calibration": calib_desc,
        "build_seconds": round(time.perf_counter() - t0, 2),
    }


def write_sidecar(engine_path, settings: TrtSettings, build: dict, metadata: dict, parity: dict | None = None) -> Path:
    """NAME.trt.json (:func:`anyir_edge.artifact.write_sidecar`): build settings, TensorRT version,
    GPU, the model metadata and parity."""
    return artifact.write_sidecar(engine_path, settings.to_dict(), build, current_environment(settings.device_id),
                                  metadata, parity)


# ================================================================ orchestration
def export_onnx_for_trt(net, path, strategy: str, opset: int | None = None, log=None) -> dict:
    """The TensorRT-friendly ONNX (fold/matmul, opset 17 -> LayerNormalization maps to TensorRT's
    normalization layer) at ``path``; returns the metadata stamped into it."""
    from . import onnx_export

    exporter, opset = onnx_export.trace(net, str(path), strategy, opset=opset or 17, dynamic=True)
    meta = onnx_export.metadata(net, strategy, exporter, opset, None)
    info = onnx_export.finalize(str(path), meta, do_simplify=True, log=log)
    return {**meta, "anyir_edge.simplifier": info["simplifier"] or "none"}


def check_only(model_or_onnx, settings: TrtSettings | None = None, trt_version: str | None = None,
               fft: str | None = None, opset: int | None = None, log=None) -> CheckReport:
    """``anyir-export --to trt --check-only``: check an existing ``.onnx`` or export the model's
    TensorRT-friendly ONNX to a temporary folder and check that.  Needs neither TensorRT nor a GPU."""
    from .formats import resolve, resolve_fft

    key = str(model_or_onnx)
    if key.lower().endswith(".onnx"):
        if not Path(key).is_file():
            raise ExportError(f"{key}: no such ONNX file")
        return check_onnx(key, trt_version, settings)
    from . import load_for_export

    net, stem, _ = load_for_export(model_or_onnx)
    strategy = resolve_fft(resolve("trt"), fft, linear=True)
    with tempfile.TemporaryDirectory(prefix="anyir-trt-check-") as d:
        p = Path(d) / f"{stem}.onnx"
        if log:
            log(f"exporting {net.name or stem} to ONNX (fft={strategy}) for the check ...")
        export_onnx_for_trt(net, p, strategy, opset, log)
        rep = check_onnx(p, trt_version, settings, size_multiple=net.size_multiple)
    rep.onnx = f"{stem}.onnx (fft={strategy})"
    return rep
