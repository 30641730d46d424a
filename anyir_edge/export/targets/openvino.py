"""``--to openvino``: the same ONNX as ``--to onnx``, converted to an OpenVINO IR (``.xml`` +
``.bin``); FP16 compresses the weights, INT8 tries NNCF and else the Q/DQ graph
(:mod:`anyir_edge.export.precision.openvino`)."""
from __future__ import annotations

from pathlib import Path

from ..formats import ExportError, Format
from .base import Context
from .onnx import OnnxSettings, OnnxTarget


class OpenVinoTarget(OnnxTarget):
    format = Format("openvino", ("ov", "openvino_ir"), ".xml",
                    frozenset({"fft", "opset", "simplify", "dynamic", "half", "int8", "calib", "data", "pad_in_graph",
                               "quality_limit", "quality_sets", "search"}),
                    ("fold", "matmul"), False, "OpenVINO IR (.xml + .bin), converted from the verified ONNX")
    options = {}  # the ONNX family's options (declared by OnnxTarget)

    def prepare(self, opts, fft):
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise ExportError("--to openvino needs OpenVINO: pip install anyir-edge[openvino]") from None
        return super().prepare(opts, fft)

    def convert(self, ctx: Context, onnx_tmp: Path, meta: dict) -> tuple[Path, list[Path]]:
        from ..openvino_export import convert

        xml = ctx.work / f"{ctx.stem}.xml"
        return xml, convert(onnx_tmp, xml, meta)

    def reduce(self, ctx: Context, s: OnnxSettings, onnx_tmp: Path, meta: dict):
        from .. import precision as P

        probe, samples, desc = self._probe_and_samples(ctx, s)
        xml = ctx.work / f"{ctx.stem}.xml"
        extra, report = P.convert_openvino(onnx_tmp, xml, meta, s.precision, samples, probe, ctx.threshold,
                                           s.plan.search, log=ctx.log, calib_desc=desc)
        return xml, extra, report


TARGET = OpenVinoTarget()
