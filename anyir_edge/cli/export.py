"""``anyir-export``: a checkpoint or shipped model -> a verified engine + parity certificate."""
from __future__ import annotations

import argparse
import sys

from ..export.formats import FFT_STRATEGIES, FORMATS


def build_parser() -> argparse.ArgumentParser:
    table = "\n".join(
        f"  {f.name:<9} {', '.join(f.aliases) or '-':<22} *{f.suffix:<8} {'GPU' if f.gpu else 'CPU'}  {f.description}"
        for f in FORMATS
    )
    p = argparse.ArgumentParser(
        prog="anyir-export",
        description="Export an AnyIR model to ONNX / OpenVINO / TensorRT, verified against the PyTorch "
                    "reference (writes NAME.<suffix> and NAME.parity.json).",
        epilog=f"formats (name, aliases, suffix, device, what):\n{table}\n\n"
               "An engine below the parity gate is kept as NAME.rejected.<suffix> with NAME.rejected.parity.json "
               "and the command exits 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", default="onnx", metavar="FORMAT", help="onnx (default), openvino, trt (aliases: engine, tensorrt)")
    p.add_argument("--model", default="anyir-tiny", metavar="NAME|PATH",
                   help="shipped model name (anyir-tiny, anyir) or checkpoint (.safetensors/.pth); default: anyir-tiny")
    p.add_argument("--output", "-o", default=None, metavar="FILE_OR_DIR",
                   help="output file or directory (default: NAME.<suffix> in the current directory)")
    p.add_argument("--fft", default=None, metavar="STRATEGY",
                   help=f"frequency path: {'|'.join(FFT_STRATEGIES)} (default auto = fold, AnyIR's path is linear)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 17; default 17, 18 for --fft dft)")
    p.add_argument("--no-simplify", dest="simplify", action="store_const", const=False, default=None,
                   help="skip onnxsim/onnxslim")
    p.add_argument("--static", dest="dynamic", action="store_const", const=False, default=None,
                   help="fixed input shape instead of dynamic batch/height/width")
    p.add_argument("--half", action="store_const", const=True, default=None, help="FP16 engine (TensorRT only)")
    p.add_argument("--workspace", type=int, default=None, metavar="GB", help="TensorRT builder workspace (TensorRT only)")
    p.add_argument("--min-psnr", type=float, default=60.0, metavar="DB", help="parity gate in dB (default 60)")
    p.add_argument("--threads", type=int, default=None, help="engine threads for the parity run (default: physical cores)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..export import export

    res = export(args.model, to=args.to, output=args.output, fft=args.fft, opset=args.opset,
                 simplify=args.simplify, half=args.half, workspace=args.workspace, dynamic=args.dynamic,
                 threshold=args.min_psnr, threads=args.threads)
    s = res.certificate["summary"]
    print(f"{res.path}  fft={res.fft}  parity: PSNR min {s['psnr_min']:.1f} dB, SSIM min {s['ssim_min']:.6f}, "
          f"max abs err {s['max_abs_error']:.2e}  certificate: {res.certificate_path}")
    return 0


if __name__ == "__main__":
    from . import run

    sys.exit(run("anyir-export", main))
