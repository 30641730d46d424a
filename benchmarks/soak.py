#!/usr/bin/env python3
"""Soak (issue #20): many restores of mixed sizes from several threads on one ``Restorer``.

    python benchmarks/soak.py [--model anyir-paper-tiny] [--restores 1000] [--threads 4]

Exports the model to ONNX (a temp folder, anyir-export's code), opens one Restorer (ONNX
Runtime, 1 intra-op thread per run) and restores ``--restores`` images of mixed sizes and
dtypes from ``--threads`` Python threads, some whole and some tiled.  Every output is compared
with the output of the same image restored serially beforehand (must be identical), and the
process's RSS is sampled: the growth from the end of the first tenth to the end (after warm-up,
arenas filled) must stay under 5 %.  Writes benchmarks/results/soak.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from anyir_edge import DEFAULT_MODEL
from anyir_edge.fsutil import atomic_write, write_json
from anyir_edge.runtime import Restorer
from anyir_edge.runtime.backends import cpu_info

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((17, 23), (48, 64), (64, 48), (96, 96), (121, 75), (160, 128), (200, 152))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def corpus(n_distinct: int, seed: int = 0) -> list[tuple[np.ndarray, int | None]]:
    """Distinct (image, tile) jobs: sizes and dtypes vary; a third are tiled."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n_distinct):
        h, w = SIZES[i % len(SIZES)]
        kind = i % 3
        if kind == 0:
            img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        elif kind == 1:
            img = (rng.random((h, w, 3)) * 65535).astype(np.uint16)
        else:
            img = rng.random((h, w)).astype(np.float32)
        tile = 32 if i % 3 == 2 and min(h, w) > 40 else None
        jobs.append((img, tile))
    return jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--restores", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4, help="Python threads sharing one Restorer")
    ap.add_argument("--distinct", type=int, default=21, help="distinct images (each restored many times)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak")
    args = ap.parse_args(argv)
    from anyir_edge.export import export

    with tempfile.TemporaryDirectory() as d:
        engine = export(args.model, to="onnx", output=d + "/", threads=1, log=lambda m: None).path
        jobs = corpus(args.distinct)
        with Restorer.open(str(engine), threads=1) as r:
            expected = [r.restore(img, tile=tile, overlap=8) for img, tile in jobs]  # serial reference
            order = [i % len(jobs) for i in range(args.restores)]
            samples, lock, done = [], threading.Lock(), [0]
            mismatches = []

            def work(i: int) -> None:
                img, tile = jobs[i]
                out = r.restore(img, tile=tile, overlap=8)
                if out.dtype != expected[i].dtype or not np.array_equal(out, expected[i]):
                    mismatches.append(i)
                with lock:
                    done[0] += 1
                    if done[0] % max(1, args.restores // 20) == 0:
                        samples.append((done[0], rss_mb()))

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(work, order))
            wall = time.perf_counter() - t0
    tenth = [mb for n, mb in samples if n <= args.restores // 10] or [samples[0][1]]
    base, end = tenth[-1], samples[-1][1]
    growth = (end - base) / base * 100
    res = {
        "model": args.model, "restores": args.restores, "threads": args.threads, "distinct_images": len(jobs),
        "identical_to_serial": not mismatches, "mismatches": len(mismatches),
        "rss_mb_after_first_tenth": round(base, 1), "rss_mb_end": round(end, 1), "rss_growth_percent": round(growth, 2),
        "rss_samples": [[n, round(mb, 1)] for n, mb in samples], "passed": (not mismatches) and growth < 5.0,
        "wall_s": round(wall, 1), "cpu": cpu_info()["model"], "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_json(args.out.with_suffix(".json"), res, indent=1)
    md = (f"# Soak: {args.restores} restores, {args.threads} threads, one Restorer\n\n"
          f"| model | restores | distinct images | identical to serial | RSS after 1/10 | RSS at end | growth | verdict |\n"
          f"|---|---|---|---|---|---|---|---|\n"
          f"| {args.model} | {args.restores} | {len(jobs)} (uint8, uint16, float gray; whole and 32 px tiles) | "
          f"{'yes' if not mismatches else f'no ({len(mismatches)})'} | {base:.1f} MB | {end:.1f} MB | {growth:+.2f} % | "
          f"{'pass' if res['passed'] else 'FAIL'} (< 5 %) |\n\n"
          f"{res['cpu']}, ONNX Runtime 1 intra-op thread per run, {wall:.0f} s; {res['date']}. "
          f"Reproduce: `{res['command']}`.\n")
    atomic_write(args.out.with_suffix(".md"), md)
    print(md)
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
