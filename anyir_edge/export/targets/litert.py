"""``--to litert``: a LiteRT (TensorFlow Lite) model (``.tflite``) for phones
(:mod:`anyir_edge.export.litert_export`): the architecture's mobile deploy form, batch 1, one
signature per size named with ``--sizes`` (litert-torch converts static shapes only); verified
here on LiteRT's own interpreter (XNNPACK) like every engine, at each of those sizes."""
from __future__ import annotations

from dataclasses import dataclass

from ... import artifact
from ...errors import EngineError
from ..formats import ExportError, Format
from .base import Built, Context, OptionSpec, Target

DEFAULT_SIZES = ((224, 224), (512, 512))
MAX_SIZES = 8
SIDE_LIMITS = (16, 4096)


@dataclass
class LiteRTSettings:
    sizes: tuple[tuple[int, int], ...]
    precision: str = "fp32"


def parse_sizes(text) -> tuple[tuple[int, int], ...]:
    """``--sizes`` ("224,512", "256x384,512") as ((H, W), ...) in the order given, without
    repeats; one-line :class:`ExportError` when malformed."""
    if text is None:
        return DEFAULT_SIZES
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
        raise ExportError(f"--sizes {text!r}: at most {MAX_SIZES} sizes (each is a signature converted separately)")
    return tuple(out)


class LiteRTTarget(Target):
    format = Format("litert", ("tflite", "tfl"), ".tflite", frozenset({"fft", "sizes", "half"}), ("fold", "matmul"),
                    False, "LiteRT / TensorFlow Lite model (.tflite) for phones; batch 1, one signature per --sizes "
                           "entry; --fp16: FP16 weights")
    options: dict[str, OptionSpec] = {
        "sizes": [(("--sizes",), dict(metavar="HxW,...", help=(
            "litert: the input sizes the .tflite runs, one signature each (litert-torch converts static shapes "
            "only): squares as 512 or H x W as 256x384, multiples of 8, comma-separated (default 224,512). An image "
            "that pads to one of them runs whole; others are tiled with the largest square that fits")))],
    }

    def prepare(self, opts, fft):
        sizes = parse_sizes(opts.get("sizes"))
        from ..litert_export import missing

        if missing():
            raise ExportError(f"--to litert needs {' and '.join(missing())}: pip install anyir-edge[litert]")
        return LiteRTSettings(sizes=sizes, precision="fp16" if opts.get("half") else "fp32")

    def stem_suffix(self, s: LiteRTSettings) -> str:
        return "" if s.precision == "fp32" else f"-{s.precision}"  # never overwrites NAME.tflite

    def fit_inputs(self, s: LiteRTSettings, inputs: list) -> list:
        """Each parity input resized to one of the engine's sizes in turn (a few pixels short of
        it in some, so the runtime's padding is checked too): the engine runs only those sizes."""
        import cv2

        out = []
        for i, (name, deg, seed, img) in enumerate(inputs):
            h, w = s.sizes[i % len(s.sizes)]
            fh, fw = h - i % 4, w - 3 * i % 4  # less than the size multiple short: padded back to (h, w)
            shrink = img.shape[0] > fh and img.shape[1] > fw
            fitted = cv2.resize(img, (fw, fh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
            out.append((f"{name}@{fh}x{fw}", deg, seed, fitted.astype(img.dtype, copy=False)))
        return out

    def build(self, ctx: Context, s: LiteRTSettings) -> Built:
        from .. import litert_export, onnx_export
        from ...models import get_architecture

        net = ctx.net
        m = net.size_multiple
        odd = [f"{h}x{w}" for h, w in s.sizes if h % m or w % m]
        if odd:
            raise ExportError(f"--sizes: {', '.join(odd)} not a multiple of the model's size multiple {m}")
        exporter = f"litert-torch {litert_export.version('litert-torch')}"
        meta = onnx_export.metadata(net, ctx.fft, exporter, None, ctx.source)
        form = get_architecture(net).deploy_form("mobile")
        meta.update({artifact.SIZES: artifact.format_sizes(s.sizes), artifact.DEPLOY_FORM: form,
                     artifact.PRECISION: s.precision})
        sizes = ", ".join(f"{h}x{w}" for h, w in s.sizes)
        ctx.log(f"exporting {net.name or ctx.stem} to LiteRT (fft={ctx.fft}, {form} form, {s.precision}, sizes "
                f"{sizes}) ...")
        buf, report = litert_export.convert(net, ctx.fft, s.sizes, meta, half=s.precision == "fp16", log=ctx.log)
        out = ctx.work / f"{ctx.stem}.tflite"
        out.write_bytes(buf)
        cert_info = {"exporter": exporter, "litert": litert_export.version("ai-edge-litert"), "deploy_form": form,
                     "sizes": [f"{h}x{w}" for h, w in s.sizes], "signatures": report["signatures"],
                     "ops": report["ops"], "input_name": artifact.INPUT_NAME, "output_name": artifact.OUTPUT_NAME,
                     "input_dims": [1, net.in_channels, "H", "W"], "batch": "1 per call (the runtime runs a batch image "
                     "by image)", "sizes_rule": "an image that pads to one of sizes runs whole; others are tiled"}
        if s.precision == "fp16":
            cert_info.update(precision="fp16", gate="min PSNR over all inputs >= threshold_db (fp16)", fp16=(
                f"weights of {', '.join(litert_export.FP16_WEIGHT_OPS)} stored in FP16 and dequantized to FP32 in the "
                "graph; certified here with FP32 arithmetic. On ARM CPUs with FP16 arithmetic XNNPACK may compute in "
                "FP16: not verified"))
        return Built(out, [], cert_info, f"{s.precision}, {len(s.sizes)} signature(s)")


TARGET = LiteRTTarget()
