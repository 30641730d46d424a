"""Building a TensorRT engine: requirements, the typed graph of TensorRT 11, the builder, the sidecar,
and the TensorRT-friendly ONNX (also for ``--check-only``)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


from ... import artifact
from ...fsutil import atomic_write
from ...runtime.backends.tensorrt_backend import current_environment
from ..formats import ExportError
from .calibrator import CalibrationFeeder, entropy_calibrator
from .check import CheckReport, check_onnx
from .constraints import apply_precision_constraints
from .settings import CALIB_CACHE, TrtSettings


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
    from .. import precision as P

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
        from ..calibration import calibration_batches, resolve_folder

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
    from .. import onnx_export

    exporter, opset = onnx_export.trace(net, str(path), strategy, opset=opset or 17, dynamic=True)
    meta = onnx_export.metadata(net, strategy, exporter, opset, None)
    info = onnx_export.finalize(str(path), meta, do_simplify=True, log=log)
    return {**meta, "anyir_edge.simplifier": info["simplifier"] or "none"}


def check_only(model_or_onnx, settings: TrtSettings | None = None, trt_version: str | None = None,
               fft: str | None = None, opset: int | None = None, log=None) -> CheckReport:
    """``anyir-export --to trt --check-only``: check an existing ``.onnx`` or export the model's
    TensorRT-friendly ONNX to a temporary folder and check that.  Needs neither TensorRT nor a GPU."""
    from ..formats import resolve, resolve_fft

    key = str(model_or_onnx)
    if key.lower().endswith(".onnx"):
        if not Path(key).is_file():
            raise ExportError(f"{key}: no such ONNX file")
        return check_onnx(key, trt_version, settings)
    from .. import load_for_export

    net, stem, _ = load_for_export(model_or_onnx)
    strategy = resolve_fft(resolve("trt"), fft, linear="fold" in net.fft_modes)
    with tempfile.TemporaryDirectory(prefix="anyir-trt-check-") as d:
        p = Path(d) / f"{stem}.onnx"
        if log:
            log(f"exporting {net.name or stem} to ONNX (fft={strategy}) for the check ...")
        export_onnx_for_trt(net, p, strategy, opset, log)
        rep = check_onnx(p, trt_version, settings, size_multiple=net.size_multiple)
    rep.onnx = f"{stem}.onnx (fft={strategy})"
    return rep
