"""``anyir-export``: a checkpoint or shipped model -> a verified engine + parity certificate."""
from __future__ import annotations

import argparse
import sys

from ..export.formats import FFT_STRATEGIES, FORMATS
from . import ArgumentParser, positive_int


def build_parser() -> argparse.ArgumentParser:
    from .. import DEFAULT_MODEL

    table = "\n".join(
        f"  {f.name:<9} {', '.join(f.aliases) or '-':<22} *{f.suffix:<8} {'GPU' if f.gpu else 'CPU'}  {f.description}"
        for f in FORMATS
    )
    p = ArgumentParser(
        prog="anyir-export",
        description="Export an AnyIR model to ONNX / OpenVINO / TensorRT, verified against the PyTorch "
                    "reference (writes NAME.<suffix> and NAME.parity.json).",
        epilog=f"formats (name, aliases, suffix, device, what):\n{table}\n\n"
               "An engine below the parity gate is kept as NAME.rejected.<suffix> with NAME.rejected.parity.json "
               "and the command exits 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", default="onnx", metavar="FORMAT", help="onnx (default), openvino, trt (aliases: engine, tensorrt)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help="shipped model name or checkpoint: our .safetensors, a bare state dict (.pth) or a training "
                        f"checkpoint such as the AnyIR authors' Lightning .ckpt; default: {DEFAULT_MODEL}")
    p.add_argument("--output", "-o", default=None, metavar="FILE_OR_DIR",
                   help="output file or directory (default: NAME.<suffix> in the current directory)")
    p.add_argument("--fft", default=None, metavar="STRATEGY",
                   help=f"frequency path: {'|'.join(FFT_STRATEGIES)} (default auto = fold, AnyIR's path is linear)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 17; default 17, 18 for --fft dft)")
    p.add_argument("--no-simplify", dest="simplify", action="store_const", const=False, default=None,
                   help="skip onnxsim/onnxslim")
    p.add_argument("--static", dest="dynamic", action="store_const", const=False, default=None,
                   help="fixed input shape instead of dynamic batch/height/width")
    p.add_argument("--pad-in-graph", dest="pad_in_graph", action="store_const", const=True, default=None,
                   help="onnx/openvino (the default): the engine pads to the size multiple and crops back itself, "
                        "so it takes any H x W, also in code that runs the raw .onnx; its metadata says "
                        "size_multiple 1 and the certificate checks it at odd sizes; it costs nothing measurable")
    p.add_argument("--no-pad-in-graph", dest="pad_in_graph", action="store_const", const=False,
                   help="the graph takes H and W that are multiples of 8 only; the runtime pads (smaller graph)")
    p.add_argument("--half", "--fp16", dest="half", action="store_const", const=True, default=None,
                   help="FP16 engine (float32 I/O), LayerNorm/softmax/reductions/q-k normalisation kept in FP32, "
                        "more nodes found by bisection if parity fails; written as NAME-fp16.<suffix>; gate 45 dB")
    p.add_argument("--int8", action="store_const", const=True, default=None,
                   help="INT8 engine: onnx = static QDQ, per-channel 7-bit weights (correct on CPUs with and "
                        "without VNNI); openvino = NNCF PTQ if installed and it passes, else that QDQ graph on "
                        "its convolutions; trt = entropy calibrator (10.x) or symmetric QDQ (11.x); sensitive "
                        "nodes left in float if parity fails; gate 35 dB")
    p.add_argument("--calib", default=None, metavar="DIR",
                   help="folder of calibration images for --int8 (degraded every supported way; onnx/openvino "
                        "default: the built-in crops, with a warning)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="--fp16/--int8 (onnx, openvino): data root for the quality gate, PSNR vs ground truth on "
                        "CBSD68 sigma 25 and Rain100L at most 0.3 dB (fp16) / 1.0 dB (int8) below the fp32 model")
    p.add_argument("--quality-limit", type=positive_int, default=None, metavar="N", help="images per quality-gate set")
    p.add_argument("--no-search", dest="search", action="store_false",
                   help="--fp16/--int8: no bisection for FP32/float nodes and no dynamic INT8 fallback")
    for which, default in (("min", "1x3x8x8"), ("opt", "1x3x512x512"), ("max", "1x3x1024x1024")):
        p.add_argument(f"--{which}-shape", default=None, metavar="1x3xHxW",
                       help=f"TensorRT optimization profile {which} shape (default {default}; H, W multiples of 8)")
    p.add_argument("--workspace", type=positive_int, default=None, metavar="MB", help="TensorRT builder workspace (default 4096)")
    p.add_argument("--timing-cache", default=None, metavar="FILE", help="TensorRT timing cache, read and updated")
    p.add_argument("--check-only", action="store_true",
                   help="--to trt: check TensorRT compatibility of the ONNX graph (--model may be a .onnx); "
                        "needs neither TensorRT nor a GPU")
    p.add_argument("--trt-version", default=None, metavar="X.Y",
                   help="TensorRT version for --check-only (default: the operator table's default, 10.x)")
    p.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                   help="parity gate in dB (default by precision: fp32 60, fp16 45, int8 35)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="engine threads for the parity run (default: physical cores)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..export import export

    if args.check_only or args.trt_version:
        return _check_only(args)
    res = export(args.model, to=args.to, output=args.output, fft=args.fft, opset=args.opset,
                 simplify=args.simplify, half=args.half, workspace=args.workspace, dynamic=args.dynamic,
                 threshold=args.min_psnr, threads=args.threads, int8=args.int8, calib=args.calib,
                 min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
                 timing_cache=args.timing_cache, data=args.data, quality_limit=args.quality_limit,
                 search=args.search, pad_in_graph=args.pad_in_graph)
    s = res.certificate["summary"]
    print(f"{res.path}  fft={res.fft}  parity: PSNR min {s['psnr_min']:.1f} dB, SSIM min {s['ssim_min']:.6f}, "
          f"max abs err {s['max_abs_error']:.2e}  certificate: {res.certificate_path}")
    return 0


def _check_only(args) -> int:
    """One line per problem (stdout), then a one-line summary; exit 1 when incompatible."""
    from ..export.formats import ExportError, resolve

    if resolve(args.to).name != "trt":
        raise ExportError(f"--check-only and --trt-version are for --to trt, not --to {args.to}")
    if not args.check_only:
        raise ExportError("--trt-version is used with --check-only")
    from ..export import trt

    settings = trt.TrtSettings(fp16=bool(args.half), int8=bool(args.int8), calib=args.calib,
                               min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
                               workspace_mb=args.workspace or trt.DEFAULT_WORKSPACE_MB, timing_cache=args.timing_cache)
    rep = trt.check_only(args.model, settings, args.trt_version, fft=args.fft, opset=args.opset,
                         log=lambda m: print(m, file=sys.stderr))
    for p in rep.problems:
        print(p.line())
    print(rep.summary())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    from . import run

    sys.exit(run("anyir-export", main))
