"""``--to executorch``: an ExecuTorch program (``.pte``) with the XNNPACK delegate, for phones
(:mod:`anyir_edge.export.executorch_export`): the architecture's mobile deploy form, batch 1,
either one ``forward`` method for any H and W up to ``--max-side`` (bounded dynamic shapes, the
default) or, with ``--sizes``, one static-shape method per size (what INT8 needs, and XNNPACK
takes the whole graph); FP32, FP16 (``--half``: float16 weights and compute but the attention,
float32 input and output) or INT8 (``--int8``); verified here on ExecuTorch's own runtime like every engine."""
from __future__ import annotations

from dataclasses import dataclass

from ..formats import ExportError, Format
from .base import (Built, Context, Target, check_sizes_fit, fit_to_sizes, fit_within, max_side_option, pt2e_int8,
                   sizes_option)


@dataclass
class ExecuTorchSettings:
    max_side: int | None                               # bounded dynamic H and W (None with sizes)
    sizes: tuple[tuple[int, int], ...] | None = None   # static methods, one per (H, W)
    precision: str = "fp32"
    calib: str | None = None                           # --int8: the calibration folder (None: built-in)
    search: bool = True                                # --int8: bisect for float convolutions below the gate


class ExecuTorchTarget(Target):
    format = Format("executorch", ("et", "pte", "xnnpack"), ".pte", frozenset({"fft", "max_side", "sizes", "half", "int8", "calib",
                                                                          "search"}),
                    ("fold", "matmul"), False,
                    "ExecuTorch program (.pte, XNNPACK) for phones; batch 1, H and W up to --max-side, or one "
                    "method per --sizes entry; --fp16 (float16 compute, attention float32), --int8 (with --sizes)")

    def prepare(self, opts, fft):
        sizes = sizes_option(opts.get("sizes"))
        if sizes and opts.get("max_side") is not None:
            raise ExportError("--sizes and --max-side exclude each other: --sizes builds one static method per size, "
                              "--max-side one method for any H and W up to it")
        side = None if sizes else max_side_option(opts)
        from .. import precision as P

        precision, calib = P.precision_of(opts.get("half"), opts.get("int8")), opts.get("calib")
        int8 = precision == "int8"
        if int8 and not sizes:
            raise ExportError("--to executorch --int8 needs --sizes: XNNPACK fails at run time on quantized programs "
                              "with dynamic H and W, so INT8 programs have one static method per size")
        P.check_calib(calib, precision)
        try:
            import executorch  # noqa: F401
        except ImportError:
            raise ExportError("--to executorch needs ExecuTorch: pip install anyir-edge[executorch]") from None
        return ExecuTorchSettings(max_side=side, sizes=sizes, precision=precision, calib=calib,
                                  search=opts.get("search") is not False)

    def stem_suffix(self, s: ExecuTorchSettings) -> str:
        return "" if s.precision == "fp32" else f"-{s.precision}"  # never overwrites NAME.pte

    def fit_inputs(self, s: ExecuTorchSettings, inputs: list) -> list:
        # static methods run only their sizes; a bounded program nothing over its bound
        return fit_to_sizes(s.sizes, inputs) if s.sizes else fit_within(s.max_side, inputs)

    def build(self, ctx: Context, s: ExecuTorchSettings) -> Built:
        from ... import artifact
        from .. import executorch_export, onnx_export

        net = ctx.net
        m = net.size_multiple
        if s.sizes:
            check_sizes_fit(s.sizes, m)
        elif s.max_side % m:
            raise ExportError(f"--max-side {s.max_side}: must be a multiple of the model's size multiple {m}")
        from importlib.metadata import version

        et_version = version("executorch")
        exporter = f"torch.export + executorch {et_version} (XNNPACK)"
        meta = onnx_export.metadata(net, ctx.fft, exporter, None, ctx.source)
        from ...models import get_architecture

        form = get_architecture(net).deploy_form("mobile")
        meta[artifact.DEPLOY_FORM] = form
        if s.sizes:
            meta[artifact.SIZES] = artifact.format_sizes(s.sizes)
            shapes = f"sizes {artifact.format_sizes(s.sizes)}, one static method each"
        else:
            meta[artifact.MAX_SIDE] = str(s.max_side)
            shapes = f"H and W up to {s.max_side}"
        ctx.log(f"exporting {net.name or ctx.stem} to ExecuTorch (fft={ctx.fft}, {form} form, {s.precision}, "
                f"{shapes}) ...")
        reduced = None
        if s.precision != "fp32":
            meta[artifact.PRECISION] = s.precision
        if s.precision == "int8":
            from ..precision.executorch_int8 import ExecuTorchQuantizer

            buf, reduced = pt2e_int8(ctx, ExecuTorchQuantizer, s.sizes, s.calib, s.search, meta)
            report = reduced["delegation"]
        else:
            buf, report = executorch_export.lower(net, ctx.fft, meta, max_side=s.max_side, sizes=s.sizes, log=ctx.log,
                                                  half=s.precision == "fp16")
        out = ctx.work / f"{ctx.stem}.pte"
        out.write_bytes(buf)
        outside = report["ops_outside_count"]
        ctx.log(f"XNNPACK took {report['delegated_ops']} op(s) in {report['partitions']} partition(s); {outside} op(s) "
                "left on portable "
                f"kernels{': ' + ', '.join(f'{k} x{v}' for k, v in report['ops_outside_delegate'].items()) if outside else ''}")
        cert_info = {"exporter": exporter, "executorch": et_version, "deploy_form": form, "delegation": report,
                     "input_name": artifact.INPUT_NAME, "output_name": artifact.OUTPUT_NAME,
                     "batch": "1 per call (the runtime runs a batch image by image)"}
        if s.sizes:
            cert_info.update(sizes=[f"{h}x{w}" for h, w in s.sizes], input_dims=[1, net.in_channels, "H", "W"],
                             methods=[artifact.sized_entry_name(h, w) for h, w in s.sizes],
                             sizes_rule="an image that pads to one of sizes runs whole; others are tiled")
        else:
            cert_info.update(max_side=s.max_side, input_dims=[1, net.in_channels, f"{m}*k <= {s.max_side}",
                                                              f"{m}*k <= {s.max_side}"])
        if reduced is not None:
            cert_info.update(precision="int8", gate="min PSNR over all inputs >= threshold_db (int8)",
                             reduced_precision=reduced)
        elif s.precision == "fp16":
            # float16 but the modules of models.mobile.FP16_UNSAFE (XNNPACK's FP16 kernels; the ops it does not
            # take run on portable kernels): no per-node float fallback, so a program below the gate is refused, not patched
            cert_info.update(precision="fp16", gate="min PSNR over all inputs >= threshold_db (fp16)",
                             compute="float16 weights and activations, the channel attention (sums over H*W) float32; "
                                     "float32 input and output",
                             weights_storage="convolution weights stored float32 (ExecuTorch's XNNPACK serializer), "
                                             "converted to float16 when the program loads")
        methods = f"{len(s.sizes)} static method(s)" if s.sizes else "dynamic H and W"
        return Built(out, [], cert_info, f"{s.precision}, {methods}, {report['partitions']} XNNPACK partition(s)")


TARGET = ExecuTorchTarget()
