#!/usr/bin/env python3
"""Engine files head to head: ``Restorer.forward`` of each (any format the runtime opens:
``.onnx``, OpenVINO ``.xml``, ``.pte``, ``.tflite``, a checkpoint for PyTorch) on the same photo
crop (``anyir_edge.bench.bench_input``), in one process, interleaved, median of N after a
warm-up, at each size and thread count; latency ratio to the first engine, and each output's
largest difference to the first's.  What ``anyir-bench`` cannot give: it runs each engine in its
own process one after the other, so its ratios carry the machine's drift between them.

    python benchmarks/engines_head_to_head.py out/m.pte out/m-fp16.pte out/m.onnx --sizes 224 512 \\
        --threads 1 2 --runs 5 --out benchmarks/results/et-fp16-anyir-tiny

A static-size program (``--sizes`` at export) runs only the sizes it was built for.  ExecuTorch's
thread pool is one per process: every ``.pte`` runs with the thread count of the current round.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _variants import size_rows, started, timing_arguments, write_results
from anyir_edge.runtime import Restorer
from anyir_edge.runtime.backends import cpu_info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engines", nargs="+", type=Path, help="engine files; the first is the reference")
    timing_arguments(ap, runs=5, out=None)
    a = ap.parse_args(argv)
    missing = [str(p) for p in a.engines if not p.exists()]
    if missing:
        ap.error(f"no such engine file: {', '.join(missing)}")
    names = [p.name for p in a.engines]
    if len(set(names)) != len(names):
        ap.error("engine file names must differ (they name the columns)")
    meta = {"cpu": cpu_info()["model"], "when": started(), "runs": a.runs, "engines": [str(p) for p in a.engines]}
    rows = []
    for threads in a.threads:
        engines = {p.name: Restorer.open(str(p), threads=threads) for p in a.engines}
        meta.setdefault("backends", {n: r.backend.describe() for n, r in engines.items()})
        rows += size_rows({n: r.forward for n, r in engines.items()}, a.sizes, a.runs, "first",
                          model=Path(names[0]).stem, threads=threads)
        for r in engines.values():
            r.close()
    out = a.out or str(Path(tempfile.mkdtemp(prefix="anyir-h2h-")) / "head-to-head")
    write_results(out, "engines_head_to_head.py", argv, meta, rows, names, "Engines head to head",
                  f"medians of {a.runs} interleaved runs of `Restorer.forward` after a warm-up, in one process, each round starting one engine further along. "
                  f"Ratio = latency / {names[0]}'s; paired = the median of the per-round ratios.", label="first")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
