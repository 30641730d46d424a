"""``anyir-bench``: benchmark engines (latency, memory, size, MACs, parity)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import ArgumentParser, non_negative_int, positive_int

EPILOG = """examples:
  anyir-bench --size 224                                  # the default shipped model, every backend, fp32
  anyir-bench --model anyir-tiny --sizes 224 512 --threads 2 --runs 7 \\
      --json benchmarks/results/bench.json --markdown benchmarks/results/bench.md --plot benchmarks/results/bench.png
  anyir-bench --backends onnxruntime --data ../shared/data --task denoise25 --limit 10
  anyir-bench --fail-below 60                             # non-zero exit if any parity < 60 dB
  anyir-bench --models anyir,anyir-l,anyir-tiny --random-weights --sizes 224 512 --backends torch,onnxruntime
                                                          # configurations side by side, shipped weights or not
statuses: ok | parity failed | export failed | run failed | skipped (with the reason)"""


def _csv(kind, choices):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(bad) or '(empty)'}; choose from {', '.join(choices)}")
        return items

    return parse


MAX_SIZE = 8192  # a 8192x8192 float32 image is 0.8 GB before any activation: larger is a typo


def main(argv: list[str] | None = None) -> int:
    from .. import DEFAULT_MODEL
    from ..bench import (BACKENDS, PRECISIONS, TASKS, Bench, Settings, add_peak, environment, gemm_peak, markdown, plot,
                         write_json)

    ap = ArgumentParser(prog="anyir-bench", description="Benchmark AnyIR engines side by side: status, size, "
                                 "params, MACs, latency, throughput, peak RSS and parity vs the PyTorch fp32 reference.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"shipped model name or checkpoint path (default {DEFAULT_MODEL})")
    ap.add_argument("--models", type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
                    help="several models (names or checkpoints, comma-separated) in one table; replaces --model")
    ap.add_argument("--random-weights", action="store_true",
                    help="benchmark configuration names with random weights (for configurations without shipped "
                         "weights: cost, speed, memory and engine-vs-reference parity, not restoration quality)")
    ap.add_argument("--size", type=int, help="one square input size (pixels per side)")
    ap.add_argument("--sizes", type=int, nargs="+", help="several sizes (default 224)")
    ap.add_argument("--backends", type=_csv("backend", BACKENDS), default=BACKENDS,
                    help=f"comma-separated (default: {','.join(BACKENDS)})")
    ap.add_argument("--precisions", type=_csv("precision", PRECISIONS), default=("fp32",),
                    help="comma-separated fp32,fp16,int8 (default fp32)")
    ap.add_argument("--threads", type=positive_int, help="intra-op threads for every engine (default: physical cores)")
    ap.add_argument("--runs", type=positive_int, default=5, help="timed runs per configuration (default 5)")
    ap.add_argument("--warmup", type=non_negative_int, default=2, help="warm-up runs (default 2)")
    ap.add_argument("--torch-fft", choices=["fft", "fold", "matmul"], default="fft",
                    help="frequency path of the PyTorch row (default fft: the reference forward)")
    ap.add_argument("--data", type=Path, help="data root for --task (PSNR/SSIM against ground truth)")
    ap.add_argument("--task", choices=sorted(TASKS), help="quality task run through each engine (needs --data)")
    ap.add_argument("--limit", type=positive_int, help="images per --task set (default all)")
    ap.add_argument("--json", type=Path, help="write all fields + environment fingerprint")
    ap.add_argument("--markdown", type=Path, help="write the Markdown table to a file too")
    ap.add_argument("--plot", type=Path, help="PNG of latency vs resolution per backend")
    ap.add_argument("--workdir", type=Path, help="keep exported engines here (default: a temp dir, removed)")
    ap.add_argument("--fail-below", type=float, metavar="DB", help="exit 1 if any parity PSNR is below DB")
    ap.add_argument("--no-gemm-peak", action="store_true",
                    help="skip measuring this machine's float32 GEMM peak (by default measured once per run, ~2 s, "
                         "and every row gets its achieved GFLOP/s and %% of that peak)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    sizes = tuple(args.sizes or ([args.size] if args.size is not None else [224]))
    if any(not 8 <= s <= MAX_SIZE for s in sizes):
        ap.error(f"sizes must be between 8 and {MAX_SIZE} pixels per side, got {' '.join(map(str, sizes))}")
    if bool(args.data) != bool(args.task):
        ap.error("--data and --task go together")
    models = args.models or [args.model]
    if args.models == []:
        ap.error("--models: give at least one model")
    rows, names = [], []
    for i, model in enumerate(models):
        workdir = (args.workdir / f"{i}-{Path(model).stem}" if len(models) > 1 else args.workdir) if args.workdir else None
        settings = Settings(model=model, sizes=sizes, backends=args.backends, precisions=args.precisions,
                            threads=args.threads, runs=args.runs, warmup=args.warmup, torch_fft=args.torch_fft,
                            data=str(args.data) if args.data else None, task=args.task, limit=args.limit,
                            workdir=str(workdir) if workdir else None, random_weights=args.random_weights)
        bench = Bench(settings, progress=not args.no_progress)
        try:
            rows += bench.rows()
            names.append(bench.model.name)
        finally:
            bench.close()
    env = environment(args.threads)
    if not args.no_gemm_peak and any(r.get("latency_ms") for r in rows):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="anyir-bench-gemm-") as d:
            peak = gemm_peak(args.threads, Path(d))
        env["gemm_peak_gflops"], env["gemm_n"] = peak.get("gflops"), peak.get("n")
        add_peak(rows, env["gemm_peak_gflops"])
    table = markdown(rows, env)
    print(table)
    if args.json:
        write_json({"settings": {**settings.__dict__, "model": models if len(models) > 1 else models[0],
                                 "model_name": names if len(names) > 1 else names[0]},
                    "environment": env, "rows": rows,
                    "command": "anyir-bench " + " ".join(argv if argv is not None else sys.argv[1:])}, args.json)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    if args.plot:
        plot(rows, args.plot)
    if args.fail_below is not None:
        low = [r for r in rows if r.get("parity_psnr_db") is not None and r["parity_psnr_db"] < args.fail_below]
        if low:
            for r in low:
                print(f"anyir-bench: parity {r['parity_psnr_db']:.1f} dB < {args.fail_below} dB for "
                      f"{r['backend']} {r['precision']} {r['size']}", file=sys.stderr)
            return 1
    return 0
