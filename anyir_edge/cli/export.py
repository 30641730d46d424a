"""``anyir-export``: a checkpoint or shipped model -> a verified engine + parity certificate."""
from __future__ import annotations

import argparse
import sys

from ..export import targets
from ..export.formats import FFT_STRATEGIES, FORMATS
from . import ArgumentParser, positive_int


def build_parser() -> argparse.ArgumentParser:
    from .. import DEFAULT_MODEL

    table = "\n".join(
        f"  {f.name:<10} {', '.join(f.aliases) or '-':<22} *{f.suffix:<10} {'GPU' if f.gpu else 'CPU'}  {f.description}"
        for f in FORMATS
    )
    p = ArgumentParser(
        prog="anyir-export",
        description="Export a restoration model (AnyIR, PromptIR, MoCE-IR) to ONNX / OpenVINO / TensorRT / ExecuTorch / LiteRT / Core ML, verified against the PyTorch "
                    "reference (writes NAME.<suffix> and NAME.<suffix>.parity.json).",
        epilog=f"formats (name, aliases, suffix, device, what):\n{table}\n\n"
               "An engine below the parity gate is kept as NAME.rejected.<suffix> with NAME.rejected.<suffix>.parity.json "
               "and the command exits 1.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--to", default="onnx", metavar="FORMAT", help="onnx (default), openvino, trt, executorch, litert, coreml (aliases below)")
    p.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                   help="shipped model name or checkpoint: our .safetensors, a bare state dict (.pth) or a training "
                        f"checkpoint such as the AnyIR authors' Lightning .ckpt; default: {DEFAULT_MODEL}")
    p.add_argument("--output", "-o", default=None, metavar="FILE_OR_DIR",
                   help="output file or directory (default: NAME.<suffix> in the current directory)")
    p.add_argument("--fft", default=None, metavar="STRATEGY",
                   help=f"frequency path: {'|'.join(FFT_STRATEGIES)} (default auto: fold where the frequency path is linear, as AnyIR's; matmul where spectra are multiplied, as MoCE-IR's)")
    # every target's own options, from the target modules (anyir_edge/export/targets/)
    for name, spec in targets.options().items():
        for flags, kw in spec:
            p.add_argument(*flags, dest=name, default=None, **kw)
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
    opts = {name: getattr(args, name) for name in targets.options() if getattr(args, name, None) is not None}
    res = export(args.model, to=args.to, output=args.output, fft=args.fft, threshold=args.min_psnr,
                 threads=args.threads, **opts)
    s = res.certificate["summary"]
    if res.certificate.get("executed", True):
        print(f"{res.path}  fft={res.fft}  parity: PSNR min {s['psnr_min']:.1f} dB, SSIM min {s['ssim_min']:.6f}, "
              f"max abs err {s['max_abs_error']:.2e}  certificate: {res.certificate_path}")
    else:  # an engine that cannot run here (Core ML): its structural checks
        print(f"{res.path}  fft={res.fft}  not executed ({res.certificate.get('not_executed', '?').split(':')[0]}); "
              f"structural checks: {s.get('checks_passed', 'passed')}  certificate: {res.certificate_path}")
    return 0


def _check_only(args) -> int:
    """One line per problem (stdout), then a one-line summary; exit 1 when incompatible."""
    from ..export.formats import ExportError, resolve

    if resolve(args.to).name != "trt":
        raise ExportError(f"--check-only and --trt-version are for --to trt, not --to {args.to}")
    if not args.check_only:
        raise ExportError("--trt-version is used with --check-only")
    from ..export import trt

    settings = targets.get("trt").settings(vars(args))
    rep = trt.check_only(args.model, settings, args.trt_version, fft=args.fft, opset=args.opset,
                         log=lambda m: print(m, file=sys.stderr))
    for p in rep.problems:
        print(p.line())
    print(rep.summary())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    from . import run

    sys.exit(run("anyir-export", main))
