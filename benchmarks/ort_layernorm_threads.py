#!/usr/bin/env python3
"""Issue #21: ONNX Runtime's CPU LayerNormalization kernel alone, at 1 and 2 threads, for the
row lengths (normalised channels) our models have.  ``profile_ops.py`` found the channel
LayerNorms of anyir-tiny *slower at 2 threads than at 1* on an Intel Xeon; this isolates the
kernel: one LayerNormalization node (axis -1, with scale and bias) on a (1, rows, C) float32
tensor, the same number of elements at every C, so only the row length and count change.

Why (read from ONNX Runtime's source, ``core/providers/cpu/nn/layer_norm_impl.cc``; the measured
flat ~70 ns per row at 2 threads, whatever the row length up to 128, fits it): the kernel
runs one task per row through ``ThreadPool::TryBatchParallelFor`` and passes the temp-space
allocator, a ``std::shared_ptr``, *by value* to its per-row function, so every row increments and
decrements one shared reference count.  On one thread that is an uncontended atomic pair; on two
the count's cache line moves between the cores for every row.  A channel LayerNorm has one row
per pixel of 16-64 floats, so this per-row cost dominates.  The contrib SkipLayerNormalization
kernel has the same pattern.

    python benchmarks/ort_layernorm_threads.py [--channels 16 32 64 128 256 1024] [--runs 20]

Results: ``benchmarks/results/ort-layernorm-threads.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from _variants import started
from anyir_edge.runtime.backends import cpu_info

RESULTS = Path(__file__).parent / "results"
ELEMENTS = 512 * 512 * 16  # anyir-tiny's first level at 512 x 512: 262144 rows of 16 channels


def layernorm_graph(channels: int) -> bytes:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.random(channels, dtype=np.float32), "scale"),
             numpy_helper.from_array(rng.random(channels, dtype=np.float32), "bias")]
    node = helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y"], axis=-1, epsilon=1e-5)
    g = helper.make_graph([node], "layernorm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "rows", channels])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "rows", channels])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128, 256, 1024])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per session, interleaved, after one warm-up (default 20)")
    ap.add_argument("--out", default=str(RESULTS / "ort-layernorm-threads"), help="output stem (.md and .json)")
    a = ap.parse_args(argv)
    meta = {"cpu": cpu_info()["model"], "when": started(), "onnxruntime": ort.__version__, "runs": a.runs,
            "elements": ELEMENTS, "command": "python benchmarks/ort_layernorm_threads.py" + (" " + " ".join(argv) if argv else "")}
    rows = []
    for c in a.channels:
        model = layernorm_graph(c)
        x = np.random.default_rng(1).standard_normal((1, ELEMENTS // c, c), dtype=np.float32)
        sessions = {}
        for t in a.threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = t, 1
            sessions[t] = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        outs = {t: s.run(None, {"x": x})[0] for t, s in sessions.items()}
        ref = outs[a.threads[0]]
        times = {t: [] for t in sessions}
        for _ in range(a.runs):
            for t, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {"x": x})
                times[t].append(time.perf_counter() - t0)
        ms = {t: statistics.median(v) * 1000 for t, v in times.items()}
        row = {"channels": c, "rows": ELEMENTS // c, "ms": {str(t): round(m, 2) for t, m in ms.items()},
               "ns_per_row": {str(t): round(m * 1e6 / (ELEMENTS // c), 1) for t, m in ms.items()},
               "max_abs_between_threads": float(max(np.abs(o - ref).max() for o in outs.values()))}
        rows.append(row)
        print(c, row["ms"], flush=True)
    Path(a.out + ".json").write_text(json.dumps({"environment": meta, "rows": rows}, indent=1))
    th = a.threads
    md = [f"# ONNX Runtime LayerNormalization at {' and '.join(map(str, th))} threads ({meta['cpu']}, {meta['when']})", "",
          f"Command: `{meta['command']}`; ONNX Runtime {ort.__version__}; one LayerNormalization node on (1, rows, C) "
          f"float32, {ELEMENTS} elements at every C; median of {a.runs} interleaved runs per thread count after a warm-up.", "",
          "| C | rows | " + " | ".join(f"{t} thread(s) ms" for t in th) + " | " + " | ".join(f"ns per row, {t}t" for t in th)
          + f" | {th[-1]}t / {th[0]}t |",
          "|---|---|" + "---|" * (2 * len(th) + 1)]
    for r in rows:
        md.append(f"| {r['channels']} | {r['rows']} | " + " | ".join(f"{r['ms'][str(t)]:.2f}" for t in th) + " | "
                  + " | ".join(f"{r['ns_per_row'][str(t)]:.1f}" for t in th)
                  + f" | {r['ms'][str(th[-1])] / r['ms'][str(th[0])]:.2f} |")
    Path(a.out + ".md").write_text("\n".join(md) + "\n")
    print("wrote", a.out + ".md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
