"""``--to onnx``: the model traced to ONNX (opset >= 17), simplified, stamped with the engine
contract's metadata; FP16 / INT8 variants through :mod:`anyir_edge.export.precision`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ... import artifact
from ..formats import ExportError, Format
from .base import Built, Context, OptionSpec, Target


@dataclass
class OnnxSettings:
    plan: object               # a precision.PrecisionPlan
    simplify: bool = True
    dynamic: bool = True
    pad_in_graph: bool = True

    @property
    def precision(self) -> str:
        return self.plan.precision


class OnnxTarget(Target):
    format = Format("onnx", (), ".onnx",
                    frozenset({"fft", "opset", "simplify", "dynamic", "half", "int8", "calib", "data", "pad_in_graph",
                               "quality_limit", "quality_sets", "search"}),
                    ("fold", "matmul", "dft"), False, "ONNX (opset >= 17), dynamic batch/height/width; --fp16, --int8")
    options: dict[str, OptionSpec] = {
        "simplify": [(("--no-simplify",), dict(action="store_const", const=False, help="skip onnxsim/onnxslim"))],
        "dynamic": [(("--static",), dict(action="store_const", const=False,
                                         help="fixed input shape instead of dynamic batch/height/width"))],
        "pad_in_graph": [
            (("--pad-in-graph",), dict(action="store_const", const=True, help=(
                "onnx/openvino (the default): the engine pads to the size multiple and crops back itself, so it "
                "takes any H x W, also in code that runs the raw .onnx; its metadata says size_multiple 1 and the "
                "certificate checks it at odd sizes; it costs nothing measurable"))),
            (("--no-pad-in-graph",), dict(action="store_const", const=False, help=(
                "the graph takes H and W that are multiples of 8 only; the runtime pads (smaller graph)")))],
        "data": [(("--data",), dict(metavar="DIR", help=(
            "--fp16/--int8 (onnx, openvino): data root for the quality gate, PSNR vs ground truth on CBSD68 sigma 25 "
            "and Rain100L at most 0.3 dB (fp16) / 1.0 dB (int8) below the fp32 model")))],
        "quality_limit": [(("--quality-limit",), dict(type=int, metavar="N", help="images per quality-gate set"))],
        "search": [(("--no-search",), dict(action="store_const", const=False, help=(
            "--fp16/--int8: no bisection for FP32/float nodes and no dynamic INT8 fallback")))],
        "quality_sets": [],  # Python API only: the quality gate's sets (default CBSD68 sigma 25, Rain100L)
    }

    def prepare(self, opts, fft):
        from .. import precision as P

        half, int8, calib, data = opts.get("half"), opts.get("int8"), opts.get("calib"), opts.get("data")
        limit = opts.get("quality_limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ExportError(f"--quality-limit {limit!r}: must be a whole number >= 1")
        plan = P.PrecisionPlan(precision=P.precision_of(half, int8), calib=calib, search=opts.get("search") is not False,
                               quality_data=str(data) if data is not None else None,
                               quality_sets=tuple(opts.get("quality_sets") or P.QUALITY_SETS), quality_limit=limit)
        P.check_calib(calib, plan.precision)
        if data is not None and plan.precision == "fp32":
            raise ExportError("--data (the quality gate) is for --fp16 / --int8 engines")
        if data is not None and not Path(data).is_dir():
            raise ExportError(f"--data {data}: no such folder")
        dynamic = opts.get("dynamic") is not False
        pad = opts.get("pad_in_graph")
        if pad is None:  # the default: it costs nothing measurable (benchmarks/results/pad_in_graph.md)
            pad = dynamic and fft != "dft"
        return OnnxSettings(plan, simplify=opts.get("simplify") is not False, dynamic=dynamic, pad_in_graph=bool(pad))

    def stem_suffix(self, settings) -> str:
        return "" if settings.precision == "fp32" else f"-{settings.precision}"  # never overwrites NAME.onnx

    def build(self, ctx: Context, s: OnnxSettings) -> Built:
        from .. import onnx_export

        onnx_tmp = ctx.work / f"{ctx.stem}.onnx"
        ctx.log(f"exporting {ctx.net.name or ctx.stem} to ONNX (fft={ctx.fft}"
                f"{', padding in the graph' if s.pad_in_graph else ''}) ...")
        exporter, opset = onnx_export.trace(ctx.net, str(onnx_tmp), ctx.fft, opset=ctx.opset, dynamic=s.dynamic,
                                            pad_in_graph=s.pad_in_graph)
        meta = onnx_export.metadata(ctx.net, ctx.fft, exporter, opset, ctx.source, pad_in_graph=s.pad_in_graph)
        info = onnx_export.finalize(str(onnx_tmp), meta, do_simplify=s.simplify, log=ctx.log)
        dims = info["input_dims"]
        if s.dynamic and any(not isinstance(d, str) for d in (dims[0], *dims[2:])):
            raise ExportError(f"the exported graph has static input dims {dims} although dynamic axes were asked")
        cert_info = {"exporter": exporter, "opset": info["opset"], "simplifier": info["simplifier"] or "none",
                     "input_name": artifact.INPUT_NAME, "output_name": artifact.OUTPUT_NAME, "input_dims": dims,
                     "export_sample_shape": list(onnx_export.SAMPLE_SHAPE)}
        if s.precision == "fp32":
            engine, companions = self.convert(ctx, onnx_tmp, meta)
            return Built(engine, companions, cert_info, "fp32")
        engine, companions, report = self.reduce(ctx, s, onnx_tmp, meta)
        cert_info.update(precision=s.precision, gate=f"min PSNR over all inputs >= threshold_db ({s.precision})",
                         reduced_precision=report)
        return Built(engine, companions, cert_info, s.precision)

    def convert(self, ctx: Context, onnx_tmp: Path, meta: dict) -> tuple[Path, list[Path]]:
        """The fp32 engine from the verified-to-be ONNX (the ONNX itself here)."""
        return onnx_tmp, []

    def _probe_and_samples(self, ctx: Context, s: OnnxSettings):
        from .. import precision as P

        plan = s.plan
        probe = P.ParityProbe(ctx.net, ctx.inputs, threads=ctx.threads) if plan.search else None
        samples, desc = None, None
        if plan.precision == "int8":
            samples, desc = P.calibration_samples(plan.calib, plan.calib_size, plan.calib_max_images, log=ctx.log)
            ctx.log(f"calibrating on {desc['samples']} samples ({desc['images']} images x {len(desc['degradations'])} "
                    f"degradations, {desc['crop'][0]}x{desc['crop'][1]}) from {desc['folder']} ...")
        return probe, samples, desc

    def reduce(self, ctx: Context, s: OnnxSettings, onnx_tmp: Path, meta: dict):
        """The fp32 ONNX -> an fp16 / int8 engine in the work folder: (engine, companions, report)."""
        from .. import precision as P

        probe, samples, desc = self._probe_and_samples(ctx, s)
        out = ctx.work / f"{ctx.stem}.{s.precision}.onnx"
        if s.precision == "fp16":
            report = P.convert_fp16(onnx_tmp, out, probe, ctx.threshold, s.plan.search, log=ctx.log)
            ctx.log(f"FP16: {len(report['fp32_nodes'])} nodes kept in FP32 "
                    f"({len(report['fp32_nodes_bisected'])} by bisection)")
        else:
            report = P.quantize_int8(onnx_tmp, out, samples, probe, ctx.threshold, s.plan.search, log=ctx.log,
                                     calib_desc=desc)
            ctx.log(f"INT8 ({report['method']}): {len(report['quantized_nodes'])} nodes quantized, "
                    f"{len(report['float_nodes'])} left in float")
        return out, [], report

    def after_verify(self, ctx, s: OnnxSettings, built, cert, failure):
        """The quality gate of a reduced-precision engine (PSNR against ground truth)."""
        if failure or s.precision == "fp32":
            return failure
        plan = s.plan
        if not plan.quality_data:
            cert["quality"] = {"passed": None, "note": "not checked: give --data DIR (CBSD68 sigma 25 and Rain100L)"}
            ctx.log("note: PSNR-vs-ground-truth gate not run (give --data DIR)")
            return None
        from ..precision import quality_gate

        ctx.log(f"quality gate: PSNR vs ground truth on {', '.join(plan.quality_sets)} against the PyTorch fp32 "
                "model ...")
        q = quality_gate(built.engine, ctx.net, s.precision, plan.quality_data, plan.quality_sets, plan.quality_limit,
                         ctx.threads)
        cert["quality"] = q
        if q["passed"]:
            return None
        worst = max(q["sets"].items(), key=lambda kv: kv[1]["drop_db"])
        cert["passed"] = False
        return (f"quality drop {worst[1]['drop_db']:.2f} dB on {worst[0]} exceeds the {q['max_drop_db']:g} dB "
                f"{s.precision} gate")


TARGET = OnnxTarget()
