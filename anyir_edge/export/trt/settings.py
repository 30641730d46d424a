"""TensorRT build settings (``--min/opt/max-shape``, ``--workspace``, FP16 / INT8, timing cache), their
validation before any GPU work, and the same settings as ONNX Runtime provider options."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path


from ... import artifact
from ...artifact import INPUT_NAME
from ..formats import ExportError


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
        from ..calibration import calib_problems

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


