"""Export AnyIR to engines, each verified against the PyTorch reference.

>>> from anyir_edge.export import export
>>> res = export("model.safetensors", to="onnx", output="out/")   # -> out/model.onnx
>>> res.certificate["summary"]["psnr_min"]

Pipeline (ONNX): trace the unpadded network (``forward_padded``) with dynamic batch/height/
width -> ``onnx.checker`` -> simplify (onnxsim, else onnxslim, else unsimplified, with a
warning) -> stamp ``metadata_props`` -> parity against ``forward`` with ``fft_mode="fft"``
on the shipped assets (run by onnxruntime at sizes other than the export sample, which
also proves the dynamic H/W) -> ``NAME.onnx`` + ``NAME.parity.json``.  Every file is written
to a temporary name and renamed.  An engine below the parity gate (60 dB fp32 by default)
never reaches ``NAME.onnx``: it is kept as ``NAME.rejected.onnx`` with its certificate
``NAME.rejected.parity.json`` and :class:`ParityError` is raised (a previous good
``NAME.onnx`` is left untouched).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import artifact
from .formats import FORMATS, ExportError, Format, ParityError, check_flags, resolve, resolve_fft
from .parity import DEFAULT_THRESHOLD_DB, certify, parity_inputs, write_json

__all__ = [
    "FORMATS", "DEFAULT_THRESHOLD_DB", "ExportError", "ExportResult", "Format", "PARITY_GATES_DB", "ParityError",
    "certify", "export", "load_for_export", "parity_inputs", "resolve", "verify",
]

# Parity gates (min PSNR over the parity inputs, dB) by engine precision: the one place they live.
# Reduced precision (issue #8): FP16 45 dB, INT8 35 dB, against the PyTorch fp32 output (TensorRT uses them too).
PARITY_GATES_DB = {"fp32": DEFAULT_THRESHOLD_DB, "fp16": 45.0, "int8": 35.0}


@dataclass
class ExportResult:
    path: Path
    certificate_path: Path
    certificate: dict
    format: str
    fft: str
    extra_files: list[Path] = field(default_factory=list)


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr)


def load_for_export(model_or_path):
    """(model, output stem, source description) from a model, a shipped name or a checkpoint."""
    from ..models import CONFIGS, RestorationNet
    from ..models.checkpoint import load_model

    if isinstance(model_or_path, RestorationNet):
        return model_or_path.eval(), model_or_path.name or type(model_or_path).arch, None
    key = str(model_or_path)
    model = load_model(key)
    if key in CONFIGS and not Path(key).exists():
        return model, key, f"shipped:{key}"
    return model, Path(key).stem, Path(key).name


def output_path(output, stem: str, fmt: Format) -> Path:
    if output is None:
        return Path.cwd() / f"{stem}{fmt.suffix}"
    s = str(output)
    p = Path(s)
    if p.exists() and not p.is_dir() and (not p.suffix or s.endswith(("/", os.sep))):
        raise ExportError(f"--output {s}: exists and is not a folder (give a folder or a *{fmt.suffix} file)")
    if p.is_dir() or s.endswith(("/", os.sep)) or not p.suffix:
        return p / f"{stem}{fmt.suffix}"
    if p.suffix.lower() != fmt.suffix:
        raise ExportError(f"--output {s}: a {fmt.name} export is written as *{fmt.suffix} (or give a directory)")
    return p


sidecar = artifact.companion  # NAME.<what> beside NAME.<suffix> (NAME.parity.json, NAME.rejected.onnx)


def _trt_unavailable(fmt: Format) -> ExportError:
    try:
        import tensorrt  # noqa: F401

        have_trt = True
    except Exception:
        have_trt = False
    try:
        import torch

        have_gpu = torch.cuda.is_available()
    except Exception:
        have_gpu = False
    why = []
    if not have_trt:
        why.append("TensorRT is not installed")
    if not have_gpu:
        why.append("no CUDA GPU found")
    if not why:
        why.append("the TensorRT builder could not start")
    return ExportError(f"--to {fmt.name} is unavailable: {' and '.join(why)}; on a machine with an NVIDIA GPU run "
                       f"pip install anyir-edge[gpu] (and a CUDA build of torch); "
                       f"--to {fmt.name} --check-only works without either")


def verify(engine_path, model, inputs=None, threshold: float = DEFAULT_THRESHOLD_DB, threads: int | None = None,
           **info) -> dict:
    """Parity certificate of an existing engine file against ``model`` (nothing written)."""
    from ..runtime import Restorer

    import torch

    old = torch.get_num_threads()
    if threads:  # the reference forward too: a shared machine punishes oversubscribed threads
        torch.set_num_threads(int(threads))
    device = None if Path(engine_path).suffix.lower() in (".engine", ".plan") else "cpu"  # TensorRT: its GPU
    try:
        with Restorer.open(str(engine_path), device=device, threads=threads) as r:
            return certify(r, model, inputs=inputs, threshold=threshold, engine=Path(engine_path).name, **info)
    finally:
        torch.set_num_threads(old)


def export(model, to: str = "onnx", output=None, fft: str | None = None, opset: int | None = None,
           simplify: bool | None = None, half: bool | None = None, workspace: int | None = None,
           dynamic: bool | None = None, inputs=None, threshold: float | None = None,
           threads: int | None = None, log=_log_default, int8: bool | None = None, calib=None,
           min_shape=None, opt_shape=None, max_shape=None, timing_cache=None, data=None,
           quality_sets=None, quality_limit: int | None = None, search: bool = True,
           pad_in_graph: bool | None = None) -> ExportResult:
    """Export ``model`` (an AnyIR module, a shipped name or a checkpoint path) ``to`` a format.

    Options left as None are defaults; options given for a target that does not accept them
    are refused (:mod:`anyir_edge.export.formats`).  ``inputs`` overrides the parity inputs
    (list of (name, degradation, seed, float32 HxWx3)); ``threads`` sets the engine's intra-op
    threads for the parity run (default: physical cores).  ``threshold`` None: the gate of the
    engine's precision (:data:`PARITY_GATES_DB`).  TensorRT options (``half`` = FP16, ``int8`` +
    ``calib``, ``min/opt/max_shape`` "1x3xHxW", ``workspace`` MB, ``timing_cache``) are validated
    before any GPU work (:mod:`anyir_edge.export.trt`).  ONNX / OpenVINO: ``half`` (FP16) or
    ``int8`` (+ ``calib``, a folder of images; None: the built-in crops, with a warning), see
    :mod:`anyir_edge.export.precision`; the file is NAME-fp16 / NAME-int8 unless ``output`` names
    a file; ``search`` False skips the bisection / dynamic fallback; ``data`` (a data root) adds
    the PSNR-vs-ground-truth gate on ``quality_sets`` (default CBSD68 sigma 25 and Rain100L,
    ``quality_limit`` images each).  ``pad_in_graph`` (ONNX / OpenVINO; default on, off for
    ``--fft dft`` and ``--static``): the engine pads and crops itself and takes any H x W.
    Raises :class:`ExportError` / :class:`ParityError` with one-line messages.
    """
    fmt = resolve(to)
    check_flags(fmt, {"fft": fft, "opset": opset, "simplify": simplify, "half": half, "workspace": workspace,
                      "dynamic": dynamic, "int8": int8, "calib": calib, "min_shape": min_shape,
                      "opt_shape": opt_shape, "max_shape": max_shape, "timing_cache": timing_cache, "data": data,
                      "pad_in_graph": pad_in_graph})
    strategy = resolve_fft(fmt, fft, linear=True)  # AnyIR's frequency path is linear
    if opset is not None and opset < 17:
        raise ExportError(f"--opset {opset}: AnyIR needs opset >= 17 (LayerNormalization)")
    trt_settings = None
    if fmt.name == "trt":
        from . import trt as trt_export

        trt_settings = trt_export.TrtSettings(
            fp16=bool(half), int8=bool(int8), calib=calib, min_shape=min_shape, opt_shape=opt_shape,
            max_shape=max_shape, workspace_mb=workspace or trt_export.DEFAULT_WORKSPACE_MB, timing_cache=timing_cache)
        trt_export.validate_settings(trt_settings)  # before any GPU work; again with the model's size multiple
        if trt_export.missing_requirements():
            raise _trt_unavailable(fmt)
    elif fmt.gpu or fmt.issue:
        raise _trt_unavailable(fmt)
    plan = None
    if trt_settings is None:
        from . import precision as P

        plan = P.PrecisionPlan(precision=P.precision_of(half, int8), calib=calib, search=search,
                               quality_data=str(data) if data is not None else None,
                               quality_sets=tuple(quality_sets or P.QUALITY_SETS), quality_limit=quality_limit)
        if calib is not None and plan.precision != "int8":
            raise ExportError("--calib is only used with --int8")
        if calib is not None:
            P.check_calib_folder(calib)  # one-line error before any work
        if data is not None and plan.precision == "fp32":
            raise ExportError("--data (the quality gate) is for --fp16 / --int8 engines")
        if data is not None and not Path(data).is_dir():
            raise ExportError(f"--data {data}: no such folder")
    if threshold is None:
        threshold = PARITY_GATES_DB[trt_settings.precision if trt_settings else plan.precision]
    if fmt.name == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise ExportError("--to openvino needs OpenVINO: pip install anyir-edge[openvino]") from None
    net, stem, source = load_for_export(model)
    if plan is not None and plan.precision != "fp32":
        stem = f"{stem}-{plan.precision}"  # never overwrites the fp32 NAME.onnx
    final = output_path(output, stem, fmt)
    final.parent.mkdir(parents=True, exist_ok=True)
    if inputs is None:
        inputs = parity_inputs()
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.export-", dir=final.parent))
    try:
        if trt_settings is not None:
            return _export_trt(net, stem, source, final, work, strategy, opset, trt_settings, inputs, threshold,
                               threads, log)
        if pad_in_graph is None:  # the default: it costs nothing measurable (benchmarks/results/pad_in_graph.md)
            pad_in_graph = dynamic is not False and strategy != "dft"
        return _export(fmt, net, stem, source, final, work, strategy, opset, simplify is not False,
                       dynamic is not False, inputs, threshold, threads, log, plan, bool(pad_in_graph))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export(fmt, net, stem, source, final, work, strategy, opset, do_simplify, dynamic, inputs, threshold, threads,
            log, plan=None, pad_in_graph=False):
    from . import onnx_export

    onnx_tmp = work / f"{stem}.onnx"
    log(f"exporting {net.name or stem} to ONNX (fft={strategy}{', padding in the graph' if pad_in_graph else ''}) ...")
    exporter, opset = onnx_export.trace(net, str(onnx_tmp), strategy, opset=opset, dynamic=dynamic,
                                        pad_in_graph=pad_in_graph)
    meta = onnx_export.metadata(net, strategy, exporter, opset, source, pad_in_graph=pad_in_graph)
    info = onnx_export.finalize(str(onnx_tmp), meta, do_simplify=do_simplify, log=log)
    if dynamic and any(not isinstance(d, str) for d in (info["input_dims"][0], *info["input_dims"][2:])):
        raise ExportError(f"the exported graph has static input dims {info['input_dims']} although dynamic axes were asked")
    engine_tmp, extra = onnx_tmp, []
    precision = plan.precision if plan is not None else "fp32"
    reduced = None
    if precision != "fp32":
        engine_tmp, extra, reduced = _reduce(fmt, net, stem, work, onnx_tmp, meta, inputs, threshold, threads, log,
                                             plan)
    elif fmt.name == "openvino":
        from .openvino_export import convert

        engine_tmp = work / f"{stem}.xml"
        extra = convert(onnx_tmp, engine_tmp, meta)
    log(f"checking parity against the PyTorch reference on {len(inputs)} inputs ...")
    pinfo = {} if reduced is None else {
        "precision": precision, "gate": f"min PSNR over all inputs >= threshold_db ({precision})",
        "reduced_precision": reduced}
    cert = verify(engine_tmp, net, inputs=inputs, threshold=threshold, threads=threads, format=fmt.name, fft=strategy,
                  exporter=exporter, opset=info["opset"], simplifier=info["simplifier"] or "none",
                  input_name=onnx_export.INPUT_NAME, output_name=onnx_export.OUTPUT_NAME,
                  input_dims=info["input_dims"], export_sample_shape=list(onnx_export.SAMPLE_SHAPE), **pinfo)
    psnr = cert["summary"]["psnr_min"]
    companions = [p for p in extra]  # e.g. OpenVINO's .bin beside the .xml
    failure = None
    if not cert["passed"]:
        failure = (f"parity {psnr:.2f} dB is below the {threshold:g} dB gate")
    elif reduced is not None and plan.quality_data:
        from .precision import quality_gate

        log(f"quality gate: PSNR vs ground truth on {', '.join(plan.quality_sets)} against the PyTorch fp32 model ...")
        q = quality_gate(engine_tmp, net, precision, plan.quality_data, plan.quality_sets, plan.quality_limit, threads)
        cert["quality"] = q
        if not q["passed"]:
            worst = max(q["sets"].items(), key=lambda kv: kv[1]["drop_db"])
            cert["passed"] = False
            failure = (f"quality drop {worst[1]['drop_db']:.2f} dB on {worst[0]} exceeds the {q['max_drop_db']:g} dB "
                       f"{precision} gate")
    elif reduced is not None:
        cert["quality"] = {"passed": None, "note": "not checked: give --data DIR (CBSD68 sigma 25 and Rain100L)"}
        log("note: PSNR-vs-ground-truth gate not run (give --data DIR)")
    cert_path, placed = _accept_or_reject(engine_tmp, final, companions, cert, failure)
    log(f"wrote {final} ({precision}, parity {psnr:.1f} dB min, SSIM {cert['summary']['ssim_min']:.6f}) and {cert_path.name}")
    return ExportResult(final, cert_path, cert, fmt.name, strategy, placed)


def _accept_or_reject(engine_tmp: Path, final: Path, companions, cert: dict, failure: str | None):
    """Place a verified engine at ``final`` with its certificate; or, on ``failure``, keep it as
    NAME.rejected.SUFFIX (+ NAME.rejected.parity.json) and raise :class:`ParityError`, leaving
    whatever was at ``final`` untouched.  Returns (certificate path, placed files).

    The certificate records the engine's digest (``engine_sha256``) and is written after the
    engine is in place, once the previous certificate is gone: however the export is stopped,
    no certificate ever sits beside an engine it does not describe (and ``Restorer.open``
    warns if one is edited in later)."""
    cert["engine_sha256"] = artifact.engine_sha256(engine_tmp)
    target = sidecar(final, ".rejected" + final.suffix) if failure else final
    cert_path = artifact.certificate_path(target)
    cert["engine"] = target.name
    if failure:
        cert["rejected"] = True
    cert_path.unlink(missing_ok=True)
    placed = _place(engine_tmp, target, companions)
    write_json(cert_path, cert)
    if failure:
        raise ParityError(f"{failure}: engine rejected, kept as "
                          f"{target} (certificate {cert_path.name}); {final.name} was not written", failure=failure)
    return cert_path, placed


def _reduce(fmt, net, stem, work, onnx_tmp, meta, inputs, threshold, threads, log, plan):
    """The verified fp32 ONNX -> an fp16 / int8 engine in ``work``: (engine, companions, report)."""
    from . import precision as P

    probe = P.ParityProbe(net, inputs, threads=threads) if plan.search else None
    samples, desc = None, None
    if plan.precision == "int8":
        samples, desc = P.calibration_samples(plan.calib, plan.calib_size, plan.calib_max_images, log=log)
        log(f"calibrating on {desc['samples']} samples ({desc['images']} images x {len(desc['degradations'])} "
            f"degradations, {desc['crop'][0]}x{desc['crop'][1]}) from {desc['folder']} ...")
    if fmt.name == "openvino":
        xml = work / f"{stem}.xml"
        extra, report = P.convert_openvino(onnx_tmp, xml, meta, plan.precision, samples, probe, threshold,
                                           plan.search, log=log, calib_desc=desc)
        return xml, extra, report
    out = work / f"{stem}.{plan.precision}.onnx"
    if plan.precision == "fp16":
        report = P.convert_fp16(onnx_tmp, out, probe, threshold, plan.search, log=log)
        log(f"FP16: {len(report['fp32_nodes'])} nodes kept in FP32 ({len(report['fp32_nodes_bisected'])} by bisection)")
    else:
        report = P.quantize_int8(onnx_tmp, out, samples, probe, threshold, plan.search, log=log, calib_desc=desc)
        log(f"INT8 ({report['method']}): {len(report['quantized_nodes'])} nodes quantized, "
            f"{len(report['float_nodes'])} left in float")
    return out, [], report


def _export_trt(net, stem, source, final, work, strategy, opset, settings, inputs, threshold, threads, log):
    """ONNX (fold/matmul, opset 17) -> compatibility check -> TensorRT engine -> parity -> place."""
    from . import onnx_export, trt as trt_export

    settings = trt_export.validate_settings(settings, net.size_multiple)
    onnx_tmp = work / f"{stem}.onnx"
    log(f"exporting {net.name or stem} to ONNX for TensorRT (fft={strategy}) ...")
    meta = trt_export.export_onnx_for_trt(net, onnx_tmp, strategy, opset, log)
    if source:
        meta["anyir_edge.source"] = source
    env = trt_export.current_environment(settings.device_id)

    def check(path):
        rep = trt_export.check_onnx(path, env["tensorrt"], settings, net.size_multiple)
        if not rep.ok:
            raise ExportError(f"{rep.summary()}: {rep.errors[0].message}")

    check(onnx_tmp)
    engine_tmp = work / f"{stem}.engine"
    typed = trt_export.needs_typed_graph(settings, env["tensorrt"])
    build_src, typed_report = onnx_tmp, None
    if typed:
        build_src = work / f"{stem}.{settings.precision}.onnx"
        typed_report = trt_export.typed_onnx(onnx_tmp, build_src, settings, log)
        check(build_src)
    build = trt_export.build_engine(build_src, engine_tmp, settings, log, typed=typed)
    if typed_report is not None:
        build["typed_graph"] = {k: typed_report.get(k) for k in ("precision", "scheme", "fp32_nodes", "quantized_nodes",
                                                                   "calibration") if k in typed_report}
    trt_export.write_sidecar(engine_tmp, settings, build, meta)
    log(f"checking parity against the PyTorch reference on {len(inputs)} inputs ({settings.precision}) ...")
    cert = verify(engine_tmp, net, inputs=inputs, threshold=threshold, threads=threads, format="trt", fft=strategy,
                  precision=settings.precision, gate=f"min PSNR over all inputs >= threshold_db ({settings.precision})",
                  tensorrt=build["tensorrt"], gpu=env["gpu"], compute_capability=env["compute_capability"],
                  build_settings=settings.to_dict(), input_name=onnx_export.INPUT_NAME,
                  output_name=onnx_export.OUTPUT_NAME)
    psnr = cert["summary"]["psnr_min"]
    parity = {"passed": cert["passed"], "threshold_db": threshold, "psnr_min": psnr,
              "ssim_min": cert["summary"]["ssim_min"]}
    side = trt_export.write_sidecar(engine_tmp, settings, build, meta, parity)
    companions = [side] + ([work / build["calibration_cache"]] if build.get("calibration_cache") else [])
    failure = None if cert["passed"] else f"parity {psnr:.2f} dB is below the {threshold:g} dB gate"
    cert_path, placed = _accept_or_reject(engine_tmp, final, companions, cert, failure)
    log(f"wrote {final} ({settings.precision}, parity {psnr:.1f} dB min) with {cert_path.name} and "
        f"{', '.join(p.name for p in placed)}")
    return ExportResult(final, cert_path, cert, "trt", strategy, placed)


def _place(src: Path, dst: Path, companions: list[Path]) -> list[Path]:
    """Rename ``src`` (and companions named STEM.<rest>, e.g. .bin, .trt.json) to ``dst`` atomically per file."""
    out = []
    for comp in companions:
        target = dst.with_name(dst.name[: -len(dst.suffix)] + comp.name[len(src.name) - len(src.suffix):])
        os.replace(comp, target)
        out.append(target)
    os.replace(src, dst)
    return out
