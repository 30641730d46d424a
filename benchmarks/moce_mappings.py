#!/usr/bin/env python3
"""MoCE-IR's two hard parts, measured (issue #19): how its per-patch spectral attention is mapped
for ONNX Runtime (constant real DFT matrices as MatMul, ``--fft matmul``, the default; or ONNX
``DFT`` ops, ``--fft dft``), and what computing every expert (the exportable routing) costs
against running only the chosen one (their eager path), in PyTorch.

    python benchmarks/moce_mappings.py [--model moce-ir-s] [--sizes 224 512] [--threads 2] [--runs 3]

Random weights (cost does not depend on them).  Engines are made by ``anyir-export`` (so each
carries its parity certificate); timings are interleaved runs after one warm-up, medians, in
one process.  Writes benchmarks/results/moce_mappings.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anyir_edge.bench import bench_input, random_model
from anyir_edge.export import export
from anyir_edge.runtime import Restorer
from anyir_edge.runtime.backends import cpu_info

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="moce-ir-s")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "moce_mappings")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = random_model(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="anyir-moce-") as d:
        engines, certs = {}, {}
        for fft in ("matmul", "dft"):
            print(f"moce_mappings: exporting --fft {fft} ...", file=sys.stderr)
            res = export(model, to="onnx", fft=fft, output=Path(d) / f"{fft}.onnx", threads=args.threads,
                         log=lambda m: None)
            engines[f"onnxruntime --fft {fft}"] = Restorer.open(str(res.path), threads=args.threads, tile=0)
            certs[f"onnxruntime --fft {fft}"] = res.certificate["summary"]["psnr_min"]
        dense = model.set_fft_mode("fft")
        sparse = copy.deepcopy(dense)  # the same weights, only the chosen experts run
        sparse.set_routing("sparse")

        def torch_run(m):
            def run(x):
                with torch.inference_mode():
                    return m(torch.from_numpy(x)).numpy()
            return run

        variants = {"pytorch, every expert (exportable form)": torch_run(dense),
                    "pytorch, chosen expert only (their eager path)": torch_run(sparse),
                    **{k: r.forward for k, r in engines.items()}}
        for size in args.sizes:
            x = bench_input(size)
            ref = variants["pytorch, every expert (exportable form)"](x)
            outs = {k: f(x) for k, f in variants.items()}  # warm-up, and the outputs compared
            times = {k: [] for k in variants}
            for _ in range(args.runs):
                for k, f in variants.items():
                    t0 = time.perf_counter()
                    f(x)
                    times[k].append(time.perf_counter() - t0)
            base = statistics.median(times["pytorch, every expert (exportable form)"])
            for k in variants:
                med = statistics.median(times[k])
                err = float(np.abs(outs[k].astype(np.float64) - ref).max())
                rows.append({"variant": k, "size": size, "median_ms": med * 1000, "vs_dense_pytorch": med / base,
                             "max_abs_vs_dense": err, "certificate_psnr_min": certs.get(k)})
                print(f"  {size} {k}: {med * 1000:.0f} ms ({med / base:.2f}x), max abs {err:.1e}", file=sys.stderr)
        for r in engines.values():
            r.close()
    env = {"cpu": cpu_info()["model"], "threads": args.threads, "runs": args.runs,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/moce_mappings.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    md = [f"# {args.model}: spectral-attention mappings and routing cost ({env['cpu']}, {args.threads} threads, "
          f"median of {args.runs} interleaved runs, {env['date']})", "",
          "| size | variant | median ms | x dense PyTorch | max abs vs dense PyTorch | certificate (min PSNR) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        cert = f"{r['certificate_psnr_min']:.1f} dB" if r["certificate_psnr_min"] else "-"
        md.append(f"| {r['size']} | {r['variant']} | {r['median_ms']:.0f} | {r['vs_dense_pytorch']:.2f} "
                  f"| {r['max_abs_vs_dense']:.1e} | {cert} |")
    md += ["", f"Command: `{env['command']}`. The chosen-expert path differs from the dense one only by float "
               "rounding (the gates of unchosen experts are exactly 0)."]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
