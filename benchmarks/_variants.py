"""What the scripts that compare *variants* of one engine share (``mobile_rewrites_ort.py``,
``layernorm_variants.py``, ``ort_session_settings.py``): the variant option, interleaved timing (a slow spell of the machine
hits every variant alike) and the results written as JSON and a Markdown table."""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np


def timing_arguments(ap: argparse.ArgumentParser, runs: int, out: str | None) -> None:
    """--sizes, --threads, --runs (interleaved, after one warm-up) and --out (the results' stem)."""
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=runs, help=f"timed runs (interleaved), after one warm-up (default {runs})")
    ap.add_argument("--out", default=out, help="output stem (.md and .json)" + ("" if out else "; default: a temporary folder"))


def chosen_variants(ap: argparse.ArgumentParser, text: str, known: tuple[str, ...]) -> list[str]:
    """The variants named in ``text`` (comma-separated) in ``known``'s order, always with the
    reference ``known[0]``; an unknown name is an argparse error."""
    asked = text.split(",")
    unknown = set(asked) - set(known)
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    return [v for v in known if v == known[0] or v in asked]


def interleaved_times(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """{name: milliseconds of each of ``runs`` rounds}; every round calls every function once,
    starting one further along each round, so none always runs right after the same one (ONNX
    Runtime's pool threads spin on after a run and slow whatever comes next on 2 cores).  Warm up
    before calling this."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t) * 1000)
    return times


def compare_row(fns: dict[str, Callable[[], np.ndarray]], runs: int, label: str, **fields) -> dict:
    """One result row: every variant's output once (the warm-up, and its max abs difference to the
    first variant's), then the medians of ``runs`` interleaved rounds and their ratios to the
    first's, and the median of the per-round ratios (paired: a round's ratio sees the machine as
    it was during that round, so a slow spell moves it less); ``label`` names the reference in the
    keys (``ratio_to_<label>``, ``paired_ratio_to_<label>``)."""
    outs = {v: f() for v, f in fns.items()}
    times = interleaved_times(fns, runs)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    ref = next(iter(fns))
    paired = {v: statistics.median(t / r for t, r in zip(ts, times[ref])) for v, ts in times.items()}
    return {**fields, "ms": {v: round(m, 1) for v, m in med.items()},
            f"ratio_to_{label}": {v: round(m / med[ref], 3) for v, m in med.items()},
            f"paired_ratio_to_{label}": {v: round(p, 3) for v, p in paired.items()},
            f"max_abs_vs_{label}": {v: float(np.abs(o - outs[ref]).max()) for v, o in outs.items()}}


def size_rows(engines: dict[str, Callable[[np.ndarray], np.ndarray]], sizes, runs: int, label: str,
              **fields) -> list[dict]:
    """:func:`compare_row` of ``engines`` (name -> function of a (1, 3, S, S) image) on the
    benchmark photo crop at each of ``sizes``, each row printed as it is measured."""
    from anyir_edge.bench import bench_input

    rows = []
    for size in sizes:
        x = np.ascontiguousarray(bench_input(size))
        row = compare_row({n: (lambda f=f: f(x)) for n, f in engines.items()}, runs, label, size=size, **fields)
        rows.append(row)
        print(*fields.values(), size, {n: f"{m:.0f} ms ({row[f'ratio_to_{label}'][n]:.3f}; paired "
                                       f"{row[f'paired_ratio_to_{label}'][n]:.3f})" for n, m in row["ms"].items()},
              flush=True)
    return rows


def ort_variant_rows(models: list[str], variants: list[str], export_variant: Callable, threads: list[int], sizes,
                     runs: int, label: str, prefix: str) -> list[dict]:
    """Each configuration of ``models`` (random weights) exported once per variant by
    ``export_variant(model, variant, folder) -> path``, then timed in ONNX Runtime: at each thread
    count one session per variant, :func:`size_rows` with ``label`` naming the reference."""
    import tempfile

    import onnxruntime as ort

    from anyir_edge.bench import random_model

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    for name in models:
        model = random_model(name)
        folder = tmp / name
        folder.mkdir()
        paths = {}
        for v in variants:
            t = time.time()
            paths[v] = export_variant(model, v, folder)
            print(f"{name} {v}: exported in {time.time() - t:.0f} s", flush=True)
        for n in threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = n, 1
            sess = {v: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for v, p in paths.items()}
            rows += size_rows({v: ort_runner(s) for v, s in sess.items()}, sizes, runs, label, model=name, threads=n)
            del sess
    return rows


def ort_variants_main(argv, doc: str, script: str, known: tuple[str, ...], export_variant: Callable, out: str,
                      title: str, ratio_note: str) -> int:
    """The whole of a script that compares exported variants of the random-weight configurations
    on ONNX Runtime (``layernorm_variants.py``, ``mobile_rewrites_ort.py``): its options (--models,
    --variants, the timing ones), :func:`ort_variant_rows`, and the results written to ``out``;
    ``known[0]`` is the reference, ``ratio_note`` says what it is."""
    import onnxruntime as ort
    import torch

    from anyir_edge.runtime.backends import cpu_info

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="anyir-tiny,anyir", help="comma-separated configurations (random weights)")
    ap.add_argument("--variants", default=",".join(known),
                    help=f"comma-separated subset of {', '.join(known)} ({known[0]} is always measured: the reference)")
    timing_arguments(ap, runs=5, out=out)
    a = ap.parse_args(argv)
    variants = chosen_variants(ap, a.variants, known)
    meta = {"cpu": cpu_info()["model"], "when": started(), "runs": a.runs, "onnxruntime": ort.__version__,
            "torch": torch.__version__, "weights": "random (anyir_edge.bench.random_model, seed 0)"}
    rows = ort_variant_rows(a.models.split(","), variants, export_variant, a.threads, a.sizes, a.runs, known[0],
                            f"anyir-{Path(script).stem}-")
    write_results(a.out, script, argv, meta, rows, variants, title,
                  f"ONNX Runtime {ort.__version__}; medians of {a.runs} interleaved runs after a warm-up; random weights. "
                  f"Ratio = latency / {ratio_note}.")
    return 0


def ort_runner(session) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime session as a function of its one input."""
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def started() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_results(stem: str, script: str, argv, meta: dict, rows: list[dict], variants: list[str], title: str,
                  intro: str, label: str | None = None) -> None:
    """``stem.json`` (``meta`` + the command, and ``rows``) and ``stem.md`` (a table: model, threads,
    size, each variant's median and ratio to the reference ``variants[0]``, the largest difference);
    ``label``: the reference's name in the rows' keys (:func:`compare_row`; default ``variants[0]``)."""
    ref = label or variants[0]
    cmd = " ".join([f"python benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])
    meta = {**meta, "command": cmd}
    Path(stem + ".json").write_text(json.dumps({"environment": meta, "rows": rows}, indent=1))
    md = [f"# {title} ({meta['cpu']}, {meta['when']})", "", f"Command: `{cmd}`; {intro}", "",
          "| model | threads | size | " + " | ".join(variants) + f" | max abs vs {ref} |",
          "|---|---|---|" + "---|" * len(variants) + "---|"]
    for r in rows:
        paired = r.get(f"paired_ratio_to_{ref}", {})
        cells = [f"{r['ms'][v]:.0f} ms ({r[f'ratio_to_{ref}'][v]:.3f}" + (f"; paired {paired[v]:.3f})" if v in paired and v != ref else ")")
                 for v in variants]
        md.append(f"| {r['model']} | {r['threads']} | {r['size']} | " + " | ".join(cells)
                  + f" | {max(r[f'max_abs_vs_{ref}'].values()):.1e} |")
    Path(stem + ".md").write_text("\n".join(md) + "\n")
    print("wrote", stem + ".md")
