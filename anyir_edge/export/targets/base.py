"""The interface every export target implements, and what the shared pipeline hands it.

The pipeline (:func:`anyir_edge.export.export`) resolves the target, lets it check its
settings before any work (:meth:`Target.prepare`), loads the model, gives the target a work
folder (:meth:`Target.build`: write the engine there), verifies the engine against the
PyTorch reference, lets the target add its own gates (:meth:`Target.after_verify`) and
places engine and certificate atomically.  A target describes itself with a
:class:`~anyir_edge.export.formats.Format` row and declares the command-line options only it
takes (:data:`Target.options`); options several targets share live in :data:`SHARED_OPTIONS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..formats import ExportError, Format


@dataclass
class Context:
    """One export in progress (the pipeline's state a target builds from)."""

    net: Any                   # the RestorationNet being exported
    stem: str                  # output name without suffix
    source: str | None         # where the weights came from (metadata)
    final: Path                # where the engine will be placed
    work: Path                 # the target's scratch folder (removed afterwards)
    fft: str                   # the concrete frequency-path strategy
    opset: int | None
    inputs: list               # the parity inputs
    threshold: float           # the parity gate
    threads: int | None
    log: Callable[[str], None]


@dataclass
class Built:
    """What a target wrote into the work folder."""

    engine: Path
    companions: list[Path] = field(default_factory=list)   # files placed beside the engine (.bin, sidecars)
    cert_info: dict = field(default_factory=dict)           # extra certificate fields
    summary: str = ""                                       # words for the final log line
    state: Any = None                                       # the target's own, for after_verify


#: an option's command-line form: one or more (flags, argparse keyword arguments), all with
#: ``dest`` = the option's name and default None (None = not given)
OptionSpec = list[tuple[tuple[str, ...], dict]]

#: options more than one target takes
SHARED_OPTIONS: dict[str, OptionSpec] = {
    "half": [(("--half", "--fp16"), dict(action="store_const", const=True, help=(
        "FP16 engine (float32 I/O), LayerNorm/softmax/reductions/q-k normalisation kept in FP32, more nodes found "
        "by bisection if parity fails (executorch: FP16 but the attention, no bisection; litert: FP16 weights); written as "
        "NAME-fp16.<suffix>; gate 45 dB")))],
    "int8": [(("--int8",), dict(action="store_const", const=True, help=(
        "INT8 engine: onnx = static QDQ, per-channel 7-bit weights (correct on CPUs with and without VNNI); "
        "openvino = NNCF PTQ if installed and it passes, else that QDQ graph on its convolutions; trt = entropy "
        "calibrator (10.x) or symmetric QDQ (11.x); executorch, litert (with --sizes) = XNNPACK's pt2e quantizer on the "
        "convolutions; sensitive nodes left in float if parity fails; gate 35 dB")))],
    "calib": [(("--calib",), dict(metavar="DIR", help=(
        "folder of calibration images for --int8 (degraded every supported way; default: the built-in crops, "
        "with a warning)")))],
    "opset": [(("--opset",), dict(type=int, help="ONNX opset (>= 17; default 17, 18 for --fft dft)"))],
    "max_side": [(("--max-side",), dict(type=int, metavar="N", help=(
        "executorch, coreml: the largest H and W the program takes (a multiple of 8, 32-4096; default 1024). "
        "ExecuTorch plans memory for it (anyir-tiny: ~0.9 GB at 512); Core ML takes H and W from 8 to it (the "
        "input's size range); the runtime tiles larger images")))],
    "sizes": [(("--sizes",), dict(metavar="HxW,...", help=(
        "litert, executorch: the input sizes the engine runs, one signature (litert) or method (executorch) each, "
        "converted with static shapes: squares as 512 or H x W as 256x384, multiples of 8, comma-separated "
        "(litert default 224,512; executorch default: none, one program for any H and W up to --max-side). An "
        "image that pads to one of them runs whole; others are tiled with the largest square that fits")))],
}


#: ``--max-side`` (the phone targets with bounded H and W): the largest H and W unless told (memory
#: is planned for it: anyir-tiny needs about 0.9 GB at 512 in ExecuTorch, and 4096 did not fit in
#: 23 GB), its limit, and the smallest bound (the example input needs two different sizes of at
#: least 2 blocks below it)
DEFAULT_MAX_SIDE = 1024
MAX_SIDE_LIMIT = 4096
MIN_MAX_SIDE = 32


def max_side_option(opts: dict) -> int:
    """``--max-side`` from a target's options (default :data:`DEFAULT_MAX_SIDE`); one-line ExportError."""
    side = opts.get("max_side")
    side = DEFAULT_MAX_SIDE if side is None else side
    if isinstance(side, bool) or not isinstance(side, int) or not MIN_MAX_SIDE <= side <= MAX_SIDE_LIMIT or side % 8:
        raise ExportError(f"--max-side {side!r}: must be a multiple of 8 from {MIN_MAX_SIDE} to {MAX_SIDE_LIMIT}")
    return side


#: ``--sizes``: at most this many (each is converted separately), each side within these limits
MAX_SIZES = 8
SIDE_LIMITS = (16, 4096)


def sizes_option(text) -> tuple[tuple[int, int], ...] | None:
    """``--sizes`` ("224,512", "256x384,512") as ((H, W), ...) in the order given, without
    repeats (None when not given); one-line :class:`ExportError` when malformed."""
    from ... import artifact
    from ...errors import EngineError

    if text is None:
        return None
    parts = [p if "x" in p else f"{p}x{p}" for p in str(text).replace(" ", "").lower().split(",")]
    try:
        listed = artifact.parse_sizes(",".join(parts))
    except EngineError:
        raise ExportError(f"--sizes {text!r}: expected sizes like 224,512 or 256x384 (H x W), comma-separated") from None
    lo, hi = SIDE_LIMITS
    out: list[tuple[int, int]] = []
    for hw in listed:
        if not all(lo <= v <= hi and v % 8 == 0 for v in hw):
            raise ExportError(f"--sizes {text!r}: {hw[0]}x{hw[1]}: each side must be a multiple of 8 from {lo} to {hi}")
        if hw not in out:
            out.append(hw)
    if len(out) > MAX_SIZES:
        raise ExportError(f"--sizes {text!r}: at most {MAX_SIZES} sizes (each is converted separately)")
    return tuple(out)


def check_sizes_fit(sizes, size_multiple: int) -> None:
    """One-line :class:`ExportError` when a size of ``--sizes`` is not a multiple of the model's."""
    odd = [f"{h}x{w}" for h, w in sizes if h % size_multiple or w % size_multiple]
    if odd:
        raise ExportError(f"--sizes: {', '.join(odd)} not a multiple of the model's size multiple {size_multiple}")


def fit_to_sizes(sizes, inputs: list) -> list:
    """Each parity input resized to one of ``sizes`` in turn (a few pixels short of it in some,
    so the runtime's padding is checked too): what an engine built for fixed sizes runs whole."""
    import cv2

    out = []
    for i, (name, deg, seed, img) in enumerate(inputs):
        h, w = sizes[i % len(sizes)]
        fh, fw = h - i % 4, w - 3 * i % 4  # less than the size multiple short: padded back to (h, w)
        shrink = img.shape[0] > fh and img.shape[1] > fw
        fitted = cv2.resize(img, (fw, fh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        out.append((f"{name}@{fh}x{fw}", deg, seed, fitted.astype(img.dtype, copy=False)))
    return out


def fit_within(max_side: int, inputs: list) -> list:
    """Each parity input with a side over ``max_side`` shrunk to fit (aspect kept), the others as
    they are: what a program bounded to ``max_side`` runs whole."""
    import cv2

    out = []
    for name, deg, seed, img in inputs:
        h, w = img.shape[:2]
        if max(h, w) > max_side:
            scale = max_side / max(h, w)
            h, w = max(1, int(h * scale)), max(1, int(w * scale))
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(img.dtype, copy=False)
            name = f"{name}@{h}x{w}"
        out.append((name, deg, seed, img))
    return out


def pt2e_int8(ctx: Context, quantizer_cls, sizes, calib: str | None, search: bool, meta: dict) -> tuple[bytes, dict]:
    """An INT8 phone program's bytes and its report (the certificate's ``reduced_precision``):
    the static programs of ``sizes`` quantized by ``quantizer_cls`` (a
    :class:`~anyir_edge.export.precision.pt2e_int8.Pt2eQuantizer`) on calibration samples at each
    size, through the INT8 gate and search (:func:`~anyir_edge.export.precision.pt2e_int8.quantize_pt2e`)."""
    from .. import precision as P
    from ..mobile_export import static_exports
    from ..precision.pt2e_int8 import quantize_pt2e

    programs, _ = static_exports(ctx.net, ctx.fft, sizes, log=ctx.log, target=quantizer_cls.mobile_target)
    descs = []

    def samples_for(h, w):
        samples, desc = P.calibration_samples(calib, (h, w), log=ctx.log if not descs else None)
        descs.append(desc)
        return samples

    q = quantizer_cls(programs, samples_for, meta, log=ctx.log)
    desc = dict(descs[0], crop=[list(d["crop"]) for d in descs])
    ctx.log(f"calibrating on {desc['samples']} samples per size ({desc['images']} images x "
            f"{len(desc['degradations'])} degradations) from {desc['folder']} ...")
    probe = P.ParityProbe(ctx.net, ctx.inputs, threads=ctx.threads)
    buf, report = quantize_pt2e(q, ctx.work, probe, ctx.threshold, search=search, log=ctx.log, calib_desc=desc)
    ctx.log(f"INT8: {len(report['quantized_nodes'])} convolutions quantized, {len(report['float_nodes'])} left float")
    return buf, report


class Target:
    """One export target.  Subclasses set :attr:`format` and :attr:`options` and implement
    :meth:`prepare` and :meth:`build`."""

    format: Format
    #: options only this target takes (shared ones: :data:`SHARED_OPTIONS`)
    options: dict[str, OptionSpec] = {}

    @property
    def name(self) -> str:
        return self.format.name

    def prepare(self, opts: dict[str, Any], fft: str) -> Any:
        """Check the options (already restricted to ``format.flags``) before any work: one-line
        :class:`ExportError`s; returns the target's settings (with a ``precision`` attribute)."""
        raise NotImplementedError

    def stem_suffix(self, settings) -> str:
        """Appended to the output name (reduced precision never overwrites the fp32 engine)."""
        return ""

    def build(self, ctx: Context, settings) -> Built:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_inputs(self, settings, inputs: list) -> list:
        """The parity inputs as the engine takes them whole (an engine built for fixed sizes gets
        them at those sizes); default: unchanged."""
        return inputs

    def certify(self, ctx: Context, settings, built: Built) -> dict:
        """The engine's certificate: by default it is run here on ``ctx.inputs`` against the
        PyTorch reference (:func:`anyir_edge.export.verify`).  A target whose engine cannot run on
        this machine overrides this with the checks it can make; its certificate says
        ``"executed": false`` and why, and ``"failure"`` when a check fails."""
        from .. import verify

        ctx.log(f"checking parity against the PyTorch reference on {len(ctx.inputs)} inputs ({built.summary}) ...")
        return verify(built.engine, ctx.net, inputs=ctx.inputs, threshold=ctx.threshold, threads=ctx.threads,
                      format=self.name, fft=ctx.fft, **built.cert_info)

    def after_verify(self, ctx: Context, settings, built: Built, cert: dict, failure: str | None) -> str | None:
        """Gates of the target's own after parity (e.g. the quality gate); returns the failure."""
        return failure


def unavailable(name: str, why: list[str], hint: str) -> ExportError:
    return ExportError(f"--to {name} is unavailable: {' and '.join(why)}; {hint}")
