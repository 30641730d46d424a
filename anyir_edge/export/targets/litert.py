"""``--to litert``: a LiteRT (TensorFlow Lite) model (``.tflite``) for phones
(:mod:`anyir_edge.export.litert_export`): the architecture's mobile deploy form, batch 1, one
signature per size named with ``--sizes`` (litert-torch converts static shapes only); verified
here on LiteRT's own interpreter (XNNPACK) like every engine, at each of those sizes."""
from __future__ import annotations

from dataclasses import dataclass

from ... import artifact
from ..formats import ExportError, Format
from .base import Built, Context, Target, check_sizes_fit, fit_to_sizes, sizes_option

DEFAULT_SIZES = ((224, 224), (512, 512))


@dataclass
class LiteRTSettings:
    sizes: tuple[tuple[int, int], ...]
    precision: str = "fp32"


class LiteRTTarget(Target):
    format = Format("litert", ("tflite", "tfl"), ".tflite", frozenset({"fft", "sizes", "half"}), ("fold", "matmul"),
                    False, "LiteRT / TensorFlow Lite model (.tflite) for phones; batch 1, one signature per --sizes "
                           "entry; --fp16: FP16 weights")

    def prepare(self, opts, fft):
        sizes = sizes_option(opts.get("sizes")) or DEFAULT_SIZES
        from ..litert_export import missing

        if missing():
            raise ExportError(f"--to litert needs {' and '.join(missing())}: pip install anyir-edge[litert]")
        return LiteRTSettings(sizes=sizes, precision="fp16" if opts.get("half") else "fp32")

    def stem_suffix(self, s: LiteRTSettings) -> str:
        return "" if s.precision == "fp32" else f"-{s.precision}"  # never overwrites NAME.tflite

    def fit_inputs(self, s: LiteRTSettings, inputs: list) -> list:
        return fit_to_sizes(s.sizes, inputs)  # the engine runs only those sizes

    def build(self, ctx: Context, s: LiteRTSettings) -> Built:
        from .. import litert_export, onnx_export
        from ...models import get_architecture

        net = ctx.net
        m = net.size_multiple
        check_sizes_fit(s.sizes, m)
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
