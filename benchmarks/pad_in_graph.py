#!/usr/bin/env python3
"""What ``--pad-in-graph`` costs (issue #20, class 7): the same model exported twice, padding by
the runtime (numpy, before the engine) and padding in the graph (Gather + Slice), run through
``Restorer.forward`` on the same inputs.

    python benchmarks/pad_in_graph.py [--model anyir-paper-tiny] [--threads 1] [--runs 9]

Sizes 224, 512 (multiples of 8: the graph's gather copies the image once) and 251x333 (odd).
Timings are interleaved (A, B, A, B, ...) after a warm-up; the ratio of medians is reported.
Writes benchmarks/results/pad_in_graph.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from anyir_edge import DEFAULT_MODEL
from anyir_edge.fsutil import atomic_write, write_json
from anyir_edge.runtime import Restorer
from anyir_edge.runtime.backends import cpu_info

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((224, 224), (512, 512), (251, 333))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pad_in_graph")
    args = ap.parse_args(argv)
    from anyir_edge.export import export

    rows = []
    with tempfile.TemporaryDirectory() as d:
        a = export(args.model, to="onnx", output=f"{d}/runtime.onnx", threads=args.threads, log=lambda m: None)
        b = export(args.model, to="onnx", output=f"{d}/graph.onnx", threads=args.threads, pad_in_graph=True,
                   log=lambda m: None)
        engines = {"runtime": Restorer.open(str(a.path), threads=args.threads),
                   "graph": Restorer.open(str(b.path), threads=args.threads)}
        for h, w in SIZES:
            x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
            outs = {k: r.forward(x) for k, r in engines.items()}  # warm-up
            times = {k: [] for k in engines}
            for _ in range(args.runs):
                for k, r in engines.items():
                    t = time.perf_counter()
                    r.forward(x)
                    times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) * 1000 for k, v in times.items()}
            rows.append({"size": [h, w], "runtime_pad_ms": round(med["runtime"], 2), "graph_pad_ms": round(med["graph"], 2),
                         "ratio": round(med["graph"] / med["runtime"], 4),
                         "max_abs_diff": float(np.abs(outs["graph"] - outs["runtime"]).max())})
        for r in engines.values():
            r.close()
    env = {"cpu": cpu_info()["model"], "threads": args.threads, "runs": args.runs,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/pad_in_graph.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_json(args.out.with_suffix(".json"), {"model": args.model, "environment": env, "rows": rows}, indent=1)
    lines = [f"# Padding in the graph vs by the runtime ({args.model})", "",
             "| size | runtime pads (ms) | graph pads (ms) | graph / runtime | max abs diff |", "|---|---|---|---|---|"]
    lines += [f"| {r['size'][0]}x{r['size'][1]} | {r['runtime_pad_ms']:.1f} | {r['graph_pad_ms']:.1f} | {r['ratio']:.3f} | "
              f"{r['max_abs_diff']:.1e} |" for r in rows]
    lines += ["", f"{env['cpu']}, {args.threads} thread(s), median of {args.runs} interleaved runs after a warm-up; "
              f"{env['date']}. Reproduce: `{env['command']}`."]
    atomic_write(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
