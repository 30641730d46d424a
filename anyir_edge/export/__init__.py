"""Export a restoration model to engines, each verified against the PyTorch reference.

>>> from anyir_edge.export import export
>>> res = export("model.safetensors", to="onnx", output="out/")   # -> out/model.onnx
>>> res.certificate["summary"]["psnr_min"]

One module per target in :mod:`anyir_edge.export.targets` (``onnx``, ``openvino``,
``tensorrt``) writes its engine; the pipeline here is shared: check the target's options
before any work, load the model, let the target build in a scratch folder, verify the engine
against ``forward`` with ``fft_mode="fft"`` on the shipped assets (:mod:`.parity`: at sizes
other than the export sample, which also proves the dynamic H/W), let the target add its own
gates (the quality gate of reduced precision, TensorRT's sidecar), then place engine,
companions and ``NAME.<suffix>.parity.json`` (the engine first, then its certificate with the
engine's digest).  An engine below the gate (60 dB fp32 by default) never reaches
``NAME.<suffix>``: it is kept as ``NAME.rejected.<suffix>`` with
``NAME.rejected.<suffix>.parity.json`` and :class:`ParityError` is raised (a previous good engine is
left untouched).
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
    if artifact.is_bundle(p) and p.suffix.lower() == fmt.suffix:  # a folder engine (NAME.mlpackage), even with a /
        if p.exists() and not p.is_dir():
            raise ExportError(f"--output {s}: exists and is not a {fmt.suffix} folder")
        return p
    if p.exists() and not p.is_dir() and (not p.suffix or s.endswith(("/", os.sep))):
        raise ExportError(f"--output {s}: exists and is not a folder (give a folder or a *{fmt.suffix} file)")
    if p.is_dir() or s.endswith(("/", os.sep)) or not p.suffix:
        return p / f"{stem}{fmt.suffix}"
    if p.suffix.lower() != fmt.suffix:
        raise ExportError(f"--output {s}: a {fmt.name} export is written as *{fmt.suffix} (or give a directory)")
    return p


sidecar = artifact.companion  # NAME.<what> beside NAME.<suffix> (NAME.trt.json, NAME.rejected.onnx)


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


def export(model, to: str = "onnx", output=None, fft: str | None = None, inputs=None,
           threshold: float | None = None, threads: int | None = None, log=_log_default,
           **options) -> ExportResult:
    """Export ``model`` (a network, a shipped name or a checkpoint path) ``to`` a target.

    The pipeline: resolve the target (:mod:`anyir_edge.export.targets`), let it check its
    ``options`` before any work, load the model, let the target write the engine in a scratch
    folder, verify it against the PyTorch reference (:func:`verify`), let the target add its
    gates, and place engine and certificate atomically (or keep a refused engine as
    ``NAME.rejected.*`` and raise :class:`ParityError`).

    ``options`` are the targets' own, None = default; one a target does not take is refused
    (:func:`~anyir_edge.export.formats.check_flags`).  ONNX / OpenVINO: ``half`` (FP16) or
    ``int8`` (+ ``calib``, a folder of images; None: the built-in crops, with a warning), see
    :mod:`anyir_edge.export.precision`, written as NAME-fp16 / NAME-int8 unless ``output``
    names a file; ``search`` False skips the bisection / dynamic fallback; ``data`` (a data
    root) adds the PSNR-vs-ground-truth gate on ``quality_sets`` (default CBSD68 sigma 25 and
    Rain100L, ``quality_limit`` images each); ``pad_in_graph`` (default on, off for ``--fft dft``
    and ``dynamic=False``): the engine pads and crops itself and takes any H x W; ``simplify``,
    ``dynamic``, ``opset``.  TensorRT: ``half``, ``int8`` + ``calib``, ``min/opt/max_shape``
    "1x3xHxW", ``workspace`` MB, ``timing_cache``, validated before any GPU work
    (:mod:`anyir_edge.export.trt`).  ``inputs`` overrides the parity inputs (list of (name,
    degradation, seed, float32 HxWx3)); ``threads`` sets the engine's intra-op threads for the
    parity run (default: physical cores); ``threshold`` None: the gate of the engine's precision
    (:data:`PARITY_GATES_DB`).  Raises :class:`ExportError` / :class:`ParityError` with one-line
    messages.
    """
    from . import targets

    fmt = resolve(to)
    check_flags(fmt, {"fft": fft, **options})
    strategy = resolve_fft(fmt, fft)  # the flags' check; the network decides auto and fold below
    opset = options.get("opset")
    if opset is not None and opset < 17:
        raise ExportError(f"--opset {opset}: AnyIR needs opset >= 17 (LayerNormalization)")
    target = targets.get(fmt.name)
    settings = target.prepare(options, strategy)
    if threshold is None:
        threshold = PARITY_GATES_DB[settings.precision]
    net, stem, source = load_for_export(model)
    strategy = resolve_fft(fmt, fft, linear="fold" in net.fft_modes)  # auto: fold where exact
    stem += target.stem_suffix(settings)
    final = output_path(output, stem, fmt)
    final.parent.mkdir(parents=True, exist_ok=True)
    inputs = target.fit_inputs(settings, parity_inputs() if inputs is None else inputs)
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.export-", dir=final.parent))
    try:
        ctx = targets.Context(net=net, stem=stem, source=source, final=final, work=work, fft=strategy, opset=opset,
                              inputs=inputs, threshold=threshold, threads=threads, log=log)
        built = target.build(ctx, settings)
        cert = target.certify(ctx, settings, built)
        if cert.get("executed", True):
            psnr = cert["summary"]["psnr_min"]
            failure = None if cert["passed"] else f"parity {psnr:.2f} dB is below the {threshold:g} dB gate"
            checked = f"parity {psnr:.1f} dB min, SSIM {cert['summary']['ssim_min']:.6f}"
        else:
            failure = None if cert["passed"] else cert.get("failure", "the engine's checks failed")
            checked = f"not executed here: {cert.get('not_executed', 'cannot run on this machine')}"
        failure = target.after_verify(ctx, settings, built, cert, failure)
        cert_path, placed = _accept_or_reject(built.engine, final, built.companions, cert, failure)
        log(f"wrote {final} ({built.summary}, {checked}) and {', '.join([cert_path.name] + [p.name for p in placed])}")
        return ExportResult(final, cert_path, cert, fmt.name, strategy, placed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _accept_or_reject(engine_tmp: Path, final: Path, companions, cert: dict, failure: str | None):
    """Place a verified engine at ``final`` with its certificate; or, on ``failure``, keep it as
    NAME.rejected.SUFFIX (+ NAME.rejected.SUFFIX.parity.json) and raise :class:`ParityError`, leaving
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
    stale = artifact.find_certificate(target)  # a pre-0.2 NAME.parity.json of the engine being replaced
    if stale is not None:
        stale.unlink(missing_ok=True)
    placed = _place(engine_tmp, target, companions)
    write_json(cert_path, cert)
    if failure:
        raise ParityError(f"{failure}: engine rejected, kept as "
                          f"{target} (certificate {cert_path.name}); {final.name} was not written", failure=failure)
    return cert_path, placed


def _place(src: Path, dst: Path, companions: list[Path]) -> list[Path]:
    """Rename ``src`` (and companions named STEM.<rest>, e.g. .bin, .trt.json) to ``dst`` atomically per file
    (a folder engine: :func:`_replace_folder`)."""
    out = []
    for comp in companions:
        target = dst.with_name(dst.name[: -len(dst.suffix)] + comp.name[len(src.name) - len(src.suffix):])
        os.replace(comp, target)
        out.append(target)
    if src.is_dir():
        _replace_folder(src, dst)
    else:
        os.replace(src, dst)
    return out


def _replace_folder(src: Path, dst: Path) -> None:
    """Put the folder ``src`` at ``dst`` (a Core ML ``.mlpackage``).  A folder cannot be renamed over
    a non-empty one, so a previous ``dst`` is first renamed aside (``.NAME.old-*`` in the same
    folder), ``src`` renamed in, and the old one removed: each step is one rename, ``dst`` is never
    a mix of old and new files, and if the second rename fails the old one is put back."""
    old = None
    if dst.exists() or dst.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        old.rmdir()  # a free name in the same file system
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
