"""``--to executorch``: an ExecuTorch program (``.pte``) with the XNNPACK delegate, for phones
(:mod:`anyir_edge.export.executorch_export`): the architecture's mobile deploy form, batch 1,
H and W up to ``--max-side``; verified here on ExecuTorch's own runtime like every engine."""
from __future__ import annotations

from dataclasses import dataclass

from ..formats import ExportError, Format
from .base import Built, Context, Target, max_side_option


@dataclass
class ExecuTorchSettings:
    max_side: int
    precision: str = "fp32"


class ExecuTorchTarget(Target):
    format = Format("executorch", ("et", "pte", "xnnpack"), ".pte", frozenset({"fft", "max_side"}),
                    ("fold", "matmul"), False,
                    "ExecuTorch program (.pte, XNNPACK) for phones; batch 1, H and W up to --max-side")
    def prepare(self, opts, fft):
        side = max_side_option(opts)
        try:
            import executorch  # noqa: F401
        except ImportError:
            raise ExportError("--to executorch needs ExecuTorch: pip install anyir-edge[executorch]") from None
        return ExecuTorchSettings(max_side=side)

    def build(self, ctx: Context, s: ExecuTorchSettings) -> Built:
        from ... import artifact
        from .. import executorch_export, onnx_export

        net = ctx.net
        if s.max_side % net.size_multiple:
            raise ExportError(f"--max-side {s.max_side}: must be a multiple of the model's size multiple "
                              f"{net.size_multiple}")
        from importlib.metadata import version

        et_version = version("executorch")
        exporter = f"torch.export + executorch {et_version} (XNNPACK)"
        meta = onnx_export.metadata(net, ctx.fft, exporter, None, ctx.source)
        from ...models import get_architecture

        form = get_architecture(net).deploy_form("mobile")
        meta.update({artifact.MAX_SIDE: str(s.max_side), artifact.DEPLOY_FORM: form})
        ctx.log(f"exporting {net.name or ctx.stem} to ExecuTorch (fft={ctx.fft}, {form} form, H and W up to "
                f"{s.max_side}) ...")
        buf, report = executorch_export.lower(net, ctx.fft, s.max_side, meta, log=ctx.log)
        out = ctx.work / f"{ctx.stem}.pte"
        out.write_bytes(buf)
        outside = report["ops_outside_count"]
        ctx.log(f"XNNPACK took {report['delegated_ops']} op(s) in {report['partitions']} partition(s); {outside} op(s) "
                "left on portable "
                f"kernels{': ' + ', '.join(f'{k} x{v}' for k, v in report['ops_outside_delegate'].items()) if outside else ''}")
        m = net.size_multiple
        cert_info = {"exporter": exporter, "executorch": et_version, "max_side": s.max_side, "deploy_form": form,
                     "delegation": report, "input_name": artifact.INPUT_NAME, "output_name": artifact.OUTPUT_NAME,
                     "input_dims": [1, net.in_channels, f"{m}*k <= {s.max_side}", f"{m}*k <= {s.max_side}"],
                     "batch": "1 per call (the runtime runs a batch image by image)"}
        return Built(out, [], cert_info, f"fp32, {report['partitions']} XNNPACK partition(s)")


TARGET = ExecuTorchTarget()
