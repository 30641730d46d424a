#!/usr/bin/env python3
"""Issue #21: ONNX Runtime *session settings* on the shipped ONNX engine, one at a time, against
the settings ``anyir_edge.runtime.backends.onnxruntime_backend`` uses today:

    ours          graph optimisation ALL, sequential, memory patterns off, CPU arena on
    extended      graph optimisation EXTENDED: no NCHWc layout transformer (ORT's blocked
                  convolution layout; its reorders around non-convolution ops are a cost the
                  profile shows)
    mem-pattern   memory patterns on (one pre-planned block per input shape; more RSS)
    no-spin       worker threads do not spin-wait between operators (session.intra_op.allow_spinning 0)
    daz           denormals flushed to zero (session.set_denormal_as_zero 1; slow denormal
                  arithmetic is the usual cause of an unexplained CPU slowdown; changes results
                  only below ~1e-38)

Every variant runs the same ``.onnx`` file (``anyir-export --to onnx``), so outputs agree to
float rounding (max abs difference printed).  One process, one session per variant, the same
photo crop (``anyir_edge.bench.bench_input``), interleaved, median of N after a warm-up, at each
size and thread count.  Keep a setting only if it wins at both 224 and 512.  Results:
``benchmarks/results/ort-session-settings.{md,json}``.

    python benchmarks/ort_session_settings.py --models anyir-tiny,anyir --random-weights --threads 1 2 --runs 7
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnxruntime as ort

from _variants import chosen_variants, ort_runner, size_rows, started, timing_arguments, write_results
from anyir_edge.bench import random_model
from anyir_edge.export import export
from anyir_edge.models.checkpoint import load_model
from anyir_edge.runtime.backends import cpu_info

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("ours", "extended", "mem-pattern", "no-spin", "daz")


def session(path: Path, variant: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    # ours: the runtime's settings (onnxruntime_backend.OnnxRuntimeBackend, low_memory=True)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_mem_pattern, so.enable_cpu_mem_arena = False, True
    so.log_severity_level = 3
    if variant == "extended":
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    elif variant == "mem-pattern":
        so.enable_mem_pattern = True
    elif variant == "no-spin":
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    elif variant == "daz":
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="anyir-tiny,anyir",
                    help="comma-separated shipped names or checkpoints (default anyir-tiny,anyir)")
    ap.add_argument("--random-weights", action="store_true", help="configuration names with random weights")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated subset of {', '.join(VARIANTS)} (ours is always measured: the reference)")
    timing_arguments(ap, runs=7, out=str(RESULTS / "ort-session-settings"))
    a = ap.parse_args(argv)
    variants = chosen_variants(ap, a.variants, VARIANTS)
    weights = "random (anyir_edge.bench.random_model, seed 0)" if a.random_weights else "as given"
    meta = {"cpu": cpu_info()["model"], "when": started(), "runs": a.runs, "onnxruntime": ort.__version__,
            "weights": weights}
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="anyir-ort-settings-"))
    for i, name in enumerate(a.models.split(",")):
        model = random_model(name) if a.random_weights else load_model(name)
        path = export(model, to="onnx", output=str(tmp / f"{i}"), log=lambda m: None).path
        label = model.name or Path(name).stem
        print(f"{label}: exported {path.name}", flush=True)
        for threads in a.threads:
            sess = {v: session(path, v, threads) for v in variants}
            rows += size_rows({v: ort_runner(s) for v, s in sess.items()}, a.sizes, a.runs, "ours", model=label,
                              threads=threads)
            del sess
    write_results(a.out, "ort_session_settings.py", argv, meta, rows, variants,
                  "ONNX Runtime session settings on the ONNX engine, one at a time",
                  f"ONNX Runtime {ort.__version__}; medians of {a.runs} interleaved runs after a warm-up; weights: "
                  f"{weights}. Ratio = latency / ours (the runtime's settings today; see the script's docstring for "
                  "each variant).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
