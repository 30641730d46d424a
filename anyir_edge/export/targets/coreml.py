"""``--to coreml``: a Core ML ML program (``.mlpackage``) for iPhones, iPads and Macs
(:mod:`anyir_edge.export.coreml_export`): the architecture's mobile deploy form, batch 1, H and W
up to ``--max-side``; FP32, or FP16 compute with ``--half``.

Core ML runs only on Apple platforms, so this target's certificate is structural
(:meth:`CoreMLTarget.certify`): ``"executed": false``, and the checks that need no Core ML
(program, input/output, the convolutions and their weights against the traced program, metadata)."""
from __future__ import annotations

from dataclasses import dataclass

from ..formats import ExportError, Format
from .base import Built, Context, Target, max_side_option

NOT_EXECUTED = ("needs macOS: Core ML runs only on Apple platforms; this certificate checks the converted program's "
                "structure, not its output")


@dataclass
class CoreMLSettings:
    max_side: int
    precision: str = "fp32"


class CoreMLTarget(Target):
    format = Format("coreml", ("mlpackage", "apple"), ".mlpackage", frozenset({"fft", "half", "max_side"}),
                    ("fold", "matmul"), False,
                    "Core ML ML program (.mlpackage) for iPhone/iPad/Mac; batch 1, H and W up to --max-side; --fp16; "
                    "checked structurally here, runs on macOS only")

    def prepare(self, opts, fft):
        import importlib.util

        from ..coreml_export import INSTALL

        side = max_side_option(opts)
        if importlib.util.find_spec("coremltools") is None:  # found without importing it (seconds, and torch)
            raise ExportError(f"--to coreml needs coremltools: {INSTALL}")
        return CoreMLSettings(max_side=side, precision="fp16" if opts.get("half") else "fp32")

    def stem_suffix(self, settings) -> str:
        return "" if settings.precision == "fp32" else f"-{settings.precision}"  # never overwrites NAME.mlpackage

    def build(self, ctx: Context, s: CoreMLSettings) -> Built:
        from ... import artifact
        from .. import coreml_export, onnx_export
        from ...models import get_architecture

        net = ctx.net
        if s.max_side % net.size_multiple:
            raise ExportError(f"--max-side {s.max_side}: must be a multiple of the model's size multiple "
                              f"{net.size_multiple}")
        ct_version = coreml_export.version()
        exporter = f"torch.export + coremltools {ct_version} (mlprogram, {coreml_export.DEPLOYMENT_TARGET})"
        meta = onnx_export.metadata(net, ctx.fft, exporter, None, ctx.source)
        form = get_architecture(net).deploy_form("mobile")
        meta.update({artifact.MAX_SIDE: str(s.max_side), artifact.DEPLOY_FORM: form})
        if s.precision != "fp32":
            meta[artifact.PRECISION] = s.precision
        ctx.log(f"exporting {net.name or ctx.stem} to Core ML (fft={ctx.fft}, {form} form, {s.precision}, H and W up "
                f"to {s.max_side}) ...")
        out = ctx.work / f"{ctx.stem}.mlpackage"
        state = coreml_export.convert(net, ctx.fft, s.max_side, meta, out, half=s.precision == "fp16", log=ctx.log)
        m = net.size_multiple
        cert_info = {
            "exporter": exporter, "coremltools": ct_version, "max_side": s.max_side, "deploy_form": form,
            "minimum_deployment_target": f"{coreml_export.DEPLOYMENT_TARGET} ({coreml_export.DEPLOYMENT_TARGET_OS})",
            "input_name": artifact.INPUT_NAME, "output_name": artifact.OUTPUT_NAME,
            "input_dims": [1, net.in_channels, f"{m}*k <= {s.max_side}", f"{m}*k <= {s.max_side}"],
            "batch": "1 per call (the runtime runs a batch image by image)",
        }
        if s.precision == "fp16":
            cert_info["fp16_fp32_ops"] = state["fp32_ops"]
        return Built(out, [], cert_info, s.precision, state)

    def certify(self, ctx: Context, s: CoreMLSettings, built: Built) -> dict:
        from .. import coreml_export
        from ..parity import environment, model_identity

        ctx.log("checking the Core ML program's structure against the traced program (Core ML cannot run here) ...")
        checks, failure = coreml_export.check(built.engine, built.state)
        cert = {
            "certificate": "anyir-edge structural",
            "executed": False,
            "not_executed": NOT_EXECUTED,
            "passed": failure is None,
            **({"failure": failure} if failure else {}),
            "gate": "every structural check passes (no parity: the program is not run)",
            **model_identity(ctx.net),
            "precision": s.precision,
            "format": self.name,
            "fft": ctx.fft,
            "engine_backend": None,
            "checks": checks,
            "summary": {"psnr_min": None, "psnr_mean": None, "ssim_min": None, "max_abs_error": None,
                        "mean_abs_error": None,
                        "checks_passed": f"{sum(bool(c.get('passed')) for c in checks.values())} of {len(checks)}"},
            **environment(),
            **built.cert_info,
        }
        cert["versions"]["coremltools"] = coreml_export.version()
        ok = sum(bool(c.get("passed")) for c in checks.values())
        ctx.log(f"{ok} of {len(checks)} structural checks passed" + (f"; {failure}" if failure else ""))
        return cert


TARGET = CoreMLTarget()
