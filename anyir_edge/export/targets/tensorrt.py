"""``--to trt``: a TensorRT engine built from a TensorRT-friendly ONNX (fold / matmul, opset 17)
after the compatibility check, with its ``NAME.trt.json`` sidecar (:mod:`anyir_edge.export.trt`).
Needs TensorRT and an NVIDIA GPU; ``--check-only`` (the CLI) runs anywhere.  Not verified on a
GPU (no machine here has one)."""
from __future__ import annotations

from ... import artifact
from ..formats import ExportError, Format
from .base import Built, Context, OptionSpec, Target, unavailable


class TensorRTTarget(Target):
    format = Format("trt", ("engine", "tensorrt"), ".engine",
                    frozenset({"fft", "opset", "half", "workspace", "int8", "calib", "min_shape", "opt_shape",
                               "max_shape", "timing_cache"}),
                    ("fold", "matmul"), True, "TensorRT engine (NVIDIA GPU; --check-only runs anywhere)")
    options: dict[str, OptionSpec] = {
        **{f"{which}_shape": [((f"--{which}-shape",), dict(metavar="1x3xHxW", help=(
            f"TensorRT optimization profile {which} shape (default {default}; H, W multiples of 8)")))]
           for which, default in (("min", "1x3x8x8"), ("opt", "1x3x512x512"), ("max", "1x3x1024x1024"))},
        "workspace": [(("--workspace",), dict(type=int, metavar="MB", help="TensorRT builder workspace (default 4096)"))],
        "timing_cache": [(("--timing-cache",), dict(metavar="FILE", help="TensorRT timing cache, read and updated"))],
    }

    def settings(self, opts):
        from .. import trt

        return trt.TrtSettings(fp16=bool(opts.get("half")), int8=bool(opts.get("int8")), calib=opts.get("calib"),
                               min_shape=opts.get("min_shape"), opt_shape=opts.get("opt_shape"),
                               max_shape=opts.get("max_shape"),
                               workspace_mb=opts.get("workspace") or trt.DEFAULT_WORKSPACE_MB,
                               timing_cache=opts.get("timing_cache"))

    def prepare(self, opts, fft):
        from .. import trt

        settings = trt.validate_settings(self.settings(opts))  # before any GPU work; again with the size multiple
        missing = trt.missing_requirements()
        if missing:
            raise unavailable(self.name, missing, "on a machine with an NVIDIA GPU run pip install anyir-edge[gpu] "
                                                  f"(and a CUDA build of torch); --to {self.name} --check-only works "
                                                  "without either")
        return settings

    def build(self, ctx: Context, settings) -> Built:
        from .. import trt

        settings = trt.validate_settings(settings, ctx.net.size_multiple)
        onnx_tmp = ctx.work / f"{ctx.stem}.onnx"
        ctx.log(f"exporting {ctx.net.name or ctx.stem} to ONNX for TensorRT (fft={ctx.fft}) ...")
        meta = trt.export_onnx_for_trt(ctx.net, onnx_tmp, ctx.fft, ctx.opset, ctx.log)
        if ctx.source:
            meta[artifact.SOURCE] = ctx.source
        env = trt.current_environment(settings.device_id)

        def check(path):
            rep = trt.check_onnx(path, env["tensorrt"], settings, ctx.net.size_multiple)
            if not rep.ok:
                raise ExportError(f"{rep.summary()}: {rep.errors[0].message}")

        check(onnx_tmp)
        engine = ctx.work / f"{ctx.stem}.engine"
        typed = trt.needs_typed_graph(settings, env["tensorrt"])
        src, typed_report = onnx_tmp, None
        if typed:
            src = ctx.work / f"{ctx.stem}.{settings.precision}.onnx"
            typed_report = trt.typed_onnx(onnx_tmp, src, settings, ctx.log)
            check(src)
        build = trt.build_engine(src, engine, settings, ctx.log, typed=typed)
        if typed_report is not None:
            build["typed_graph"] = {k: typed_report.get(k) for k in ("precision", "scheme", "fp32_nodes",
                                                                     "quantized_nodes", "calibration")
                                    if k in typed_report}
        side = trt.write_sidecar(engine, settings, build, meta)
        companions = [side] + ([ctx.work / build["calibration_cache"]] if build.get("calibration_cache") else [])
        cert_info = {"precision": settings.precision,
                     "gate": f"min PSNR over all inputs >= threshold_db ({settings.precision})",
                     "tensorrt": build["tensorrt"], "gpu": env["gpu"], "compute_capability": env["compute_capability"],
                     "build_settings": settings.to_dict(), "input_name": artifact.INPUT_NAME,
                     "output_name": artifact.OUTPUT_NAME}
        return Built(engine, companions, cert_info, settings.precision, state=(settings, build, meta))

    def after_verify(self, ctx, settings, built, cert, failure):
        """The sidecar records the parity result too (the C++ and Python runtimes read it)."""
        from .. import trt

        settings, build, meta = built.state
        parity = {"passed": cert["passed"], "threshold_db": ctx.threshold, "psnr_min": cert["summary"]["psnr_min"],
                  "ssim_min": cert["summary"]["ssim_min"]}
        trt.write_sidecar(built.engine, settings, build, meta, parity)
        return failure


TARGET = TensorRTTarget()
