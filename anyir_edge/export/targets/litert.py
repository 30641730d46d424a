"""``--to litert``: a LiteRT (TensorFlow Lite) model (``.tflite``) for phones
(:mod:`anyir_edge.export.litert_export`): the architecture's mobile deploy form, batch 1, one
signature per size named with ``--sizes`` (litert-torch converts static shapes only); verified
here on LiteRT's own interpreter (XNNPACK) like every engine, at each of those sizes.  FP32, FP16
weights (``--half``) or INT8 (``--int8``: :mod:`anyir_edge.export.precision.litert_int8`)."""
from __future__ import annotations

from dataclasses import dataclass

from ... import artifact
from ..formats import ExportError, Format
from .base import Built, Context, Target, check_sizes_fit, fit_to_sizes, pt2e_int8, sizes_option

DEFAULT_SIZES = ((224, 224), (512, 512))


@dataclass
class LiteRTSettings:
    sizes: tuple[tuple[int, int], ...]
    precision: str = "fp32"
    calib: str | None = None   # --int8: the calibration folder (None: built-in)
    search: bool = True        # --int8: bisect for float convolutions below the gate


class LiteRTTarget(Target):
    format = Format("litert", ("tflite", "tfl"), ".tflite",
                    frozenset({"fft", "sizes", "half", "int8", "calib", "search"}), ("fold", "matmul"), False,
                    "LiteRT / TensorFlow Lite model (.tflite) for phones; batch 1, one signature per --sizes "
                    "entry; --fp16: FP16 weights; --int8: INT8 convolutions")

    def prepare(self, opts, fft):
        sizes = sizes_option(opts.get("sizes")) or DEFAULT_SIZES
        from .. import precision as P

        precision, calib = P.precision_of(opts.get("half"), opts.get("int8")), opts.get("calib")
        int8 = precision == "int8"
        P.check_calib(calib, precision)
        from ..litert_export import missing

        needs = missing() + (["executorch (its XNNPACK quantizer)"] if int8 and _no_executorch() else [])
        if needs:
            extras = "[litert,executorch]" if int8 else "[litert]"
            raise ExportError(f"--to litert{' --int8' if int8 else ''} needs {' and '.join(needs)}: "
                              f"pip install anyir-edge{extras}")
        return LiteRTSettings(sizes=sizes, precision=precision, calib=calib, search=opts.get("search") is not False)

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
        if s.precision == "int8":
            from ..precision.litert_int8 import LiteRTQuantizer

            buf, reduced = pt2e_int8(ctx, LiteRTQuantizer, s.sizes, s.calib, s.search, meta)
            report = reduced["ops"]
        else:
            buf, report = litert_export.convert(net, ctx.fft, s.sizes, meta, half=s.precision == "fp16", log=ctx.log)
        out = ctx.work / f"{ctx.stem}.tflite"
        out.write_bytes(buf)
        cert_info = {"exporter": exporter, "litert": litert_export.version("ai-edge-litert"), "deploy_form": form,
                     "sizes": [f"{h}x{w}" for h, w in s.sizes], "signatures": report["signatures"],
                     "ops": report["ops"], "int8_ops": report["int8_ops"], "input_name": artifact.INPUT_NAME,
                     "output_name": artifact.OUTPUT_NAME,
                     "input_dims": [1, net.in_channels, "H", "W"], "batch": "1 per call (the runtime runs a batch image "
                     "by image)", "sizes_rule": "an image that pads to one of sizes runs whole; others are tiled"}
        if s.precision == "int8":
            cert_info.update(precision="int8", gate="min PSNR over all inputs >= threshold_db (int8)",
                             reduced_precision=reduced)
        elif s.precision == "fp16":
            cert_info.update(precision="fp16", gate="min PSNR over all inputs >= threshold_db (fp16)", fp16=(
                f"weights of {', '.join(litert_export.FP16_WEIGHT_OPS)} stored in FP16 and dequantized to FP32 in the "
                "graph; certified here with FP32 arithmetic. On ARM CPUs with FP16 arithmetic XNNPACK may compute in "
                "FP16: not verified"))
        return Built(out, [], cert_info, f"{s.precision}, {len(s.sizes)} signature(s)")


def _no_executorch() -> bool:
    import importlib.util

    return importlib.util.find_spec("executorch") is None


TARGET = LiteRTTarget()
