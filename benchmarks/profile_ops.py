#!/usr/bin/env python3
"""Where the time goes (issue #21): each CPU engine's time per operator class, beside what this
machine can do for that class.

    python benchmarks/profile_ops.py [--models anyir,anyir-tiny] [--sizes 224 512] [--threads 1 2]
                                     [--runs 3] [--out benchmarks/results/profile-ops]

For every model (random weights: the cost does not depend on them), the engine ``anyir-export``
ships (deploy form, certified) is run by ONNX Runtime with its profiler and by OpenVINO with its
performance counters, ``--runs`` profiled runs after one warm-up, at each size and thread count.
Node times are summed per class:

=================  ==========================================================================
conv 1x1           pointwise convolutions (ORT: Conv / FusedConv / NchwcConv; OV: Convolution)
conv depthwise     grouped convolutions with one input channel per group
conv kxk           dense 3x3 (and larger) convolutions
matmul/attention   MatMul / FusedMatMul (ORT); OV's attention subgraphs (MatMul + Softmax)
layernorm          LayerNormalization (ORT), OV subgraphs holding it, OV's RMS / MVN
reduce/softmax     ReduceMean / ReduceL2 / Softmax (the L2 normalisation, GatedDA's statistics)
element-wise       Add, Mul, Sigmoid, Gelu, Div, Pow, Sqrt, Clip, ... and OV's fused element-wise subgraphs
copy/reshape       Reshape, Transpose, Concat, Slice, Split, Gather, Expand, Shape, ...
layout reorder     ORT's NCHWc ReorderInput / ReorderOutput, OV's Reorder
pixel shuffle      DepthToSpace / SpaceToDepth
=================  ==========================================================================

FLOPs per class are counted from the shapes ONNX Runtime's profiler records (convolutions and
matmuls: 2 x MACs; element-wise work is reported as bytes moved, in + out, instead).  The
OpenVINO rows reuse ONNX Runtime's FLOP and byte counts per class (same graph, same maths) with
OpenVINO's own times.  What the machine can do, measured once per thread count in the same run:
float32 GEMM peak (1024^2 matmul) and memory bandwidth (a 64 MiB element-wise add, 3 x 64 MiB
moved).  Writes OUT.json and OUT.md.

Each table also gives the **bound for this graph** (issue #21's "which part of the gap is
memory-bound"): convolutions and matmuls at the GEMM peak, every other node's bytes (views such as
Reshape excluded) at the bandwidth of an element-wise add on tensors the size of this image's
largest activation (``dim x H x W``: in cache at small sizes, in memory at large ones), measured at
the same thread count.  Better kernels cannot take the graph below that bound; only fewer nodes or
fewer bytes can.  Its "% of GEMM peak at best" is the ceiling the done-when figure is read against.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("conv 1x1", "conv depthwise", "conv kxk", "matmul/attention", "layernorm", "reduce/softmax",
           "element-wise", "copy/reshape", "layout reorder", "pixel shuffle", "other")
COMPUTE = {"conv 1x1", "conv depthwise", "conv kxk", "matmul/attention"}
_ELEMENTWISE = {"Add", "Mul", "Sub", "Div", "Sigmoid", "Gelu", "FastGelu", "BiasGelu", "Erf", "Pow", "Sqrt", "Clip",
                "Where", "Less", "Mod", "Relu", "Tanh", "Exp", "Neg", "Abs", "Min", "Max", "Equal", "Not",
                "Multiply", "Subtract", "Power", "PowerStatic", "Clamp", "Eltwise", "Select", "Divide", "Sum"}
_COPY = {"Reshape", "Transpose", "Concat", "Slice", "Split", "Gather", "Unsqueeze", "Squeeze", "Flatten", "Expand",
         "Shape", "Range", "Identity", "Cast", "Tile", "Pad", "VariadicSplit", "Broadcast", "ShapeOf", "Convert",
         "StridedSlice", "GatherElements", "ScatterND", "Constant", "Parameter", "Result"}
_REDUCE = {"ReduceMean", "ReduceL2", "ReduceSum", "Softmax", "SoftMax", "ReduceMax"}
# nodes a runtime may run without moving their data (a view of the input): no bytes in the bound
_ALIAS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Constant"}


def _bytes(shapes) -> int:
    total = 0
    for s in shapes:
        (dtype, dims), = s.items()
        total += int(np.prod(dims, dtype=np.int64)) * (8 if dtype in ("int64", "double") else 4)
    return total


def classify_ort(op: str, ins: list) -> str:
    if op in ("Conv", "FusedConv", "NchwcConv"):
        w = next(iter(ins[1].values()))
        if w[2] * w[3] == 1:
            return "conv 1x1"
        cin = next(iter(ins[0].values()))[1]
        return "conv depthwise" if w[1] == 1 and cin > 1 else "conv kxk"
    if op in ("MatMul", "FusedMatMul", "Gemm"):
        return "matmul/attention"
    if op in ("LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization"):
        return "layernorm"
    if op in ("ReorderInput", "ReorderOutput"):
        return "layout reorder"
    if op in ("DepthToSpace", "SpaceToDepth"):
        return "pixel shuffle"
    for kind, names in (("reduce/softmax", _REDUCE), ("element-wise", _ELEMENTWISE), ("copy/reshape", _COPY)):
        if op in names:
            return kind
    return "other"


def flops_ort(op: str, ins: list, outs: list) -> float:
    """2 x MACs of a convolution or matmul node from its recorded shapes (0 for other nodes)."""
    if op in ("Conv", "FusedConv", "NchwcConv"):
        w = next(iter(ins[1].values()))
        o = next(iter(outs[0].values()))
        return 2.0 * np.prod(o, dtype=np.float64) * w[1] * w[2] * w[3]
    if op in ("MatMul", "FusedMatMul", "Gemm"):
        a = next(iter(ins[0].values()))
        o = next(iter(outs[0].values()))
        return 2.0 * np.prod(o, dtype=np.float64) * a[-1]
    return 0.0


def profile_ort(onnx_path: Path, x: np.ndarray, threads: int, runs: int, workdir: Path) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(workdir / "ort")
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)  # warm-up (profiled, dropped below by run index)
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        walls.append(time.perf_counter() - t0)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs_ev = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs_ev[1]["ts"] if len(runs_ev) > 1 else 0  # skip the warm-up run
    per = collections.defaultdict(lambda: {"us": 0.0, "flops": 0.0, "bytes": 0.0, "moved": 0.0, "nodes": 0})
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        a = e["args"]
        ins, outs = a.get("input_type_shape", []), a.get("output_type_shape", [])
        c = classify_ort(a["op_name"], ins)
        per[c]["us"] += e["dur"] / runs
        per[c]["flops"] += flops_ort(a["op_name"], ins, outs) / runs
        per[c]["bytes"] += (_bytes(ins) + _bytes(outs)) / runs
        if a["op_name"] not in _ALIAS:
            per[c]["moved"] += (_bytes(ins) + _bytes(outs)) / runs
        per[c]["nodes"] += 1 / runs
    return {"wall_ms": statistics.median(walls) * 1000, "classes": dict(per)}


def classify_ov(layer_type: str, names: str, shapes: list) -> str:
    if layer_type == "Convolution":
        w = shapes[1] if len(shapes) > 1 else None
        return "conv 1x1" if w and len(w) == 4 and w[2] * w[3] == 1 else "conv kxk"
    if layer_type == "GroupConvolution":
        return "conv depthwise"
    if layer_type in ("MatMul", "FullyConnected", "ScaledDotProductAttention"):
        return "matmul/attention"
    if layer_type == "Subgraph":
        if "MatMul" in names:
            return "matmul/attention"
        if "LayerNormalization" in names:
            return "layernorm"
        return "element-wise"
    if layer_type in ("RMS", "MVN", "LayerNorm"):
        return "layernorm"
    if layer_type == "Reorder":
        return "layout reorder"
    return classify_ort(layer_type, [{}])


def profile_ov(onnx_path: Path, x: np.ndarray, threads: int, runs: int) -> dict:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    model.reshape({0: list(x.shape)})
    from anyir_edge.runtime.backends.openvino_backend import compile_config  # as our engines run

    cm = core.compile_model(model, "CPU", {**compile_config("CPU", threads), "PERF_COUNT": True,
                                           "PERFORMANCE_HINT": "LATENCY"})
    info = {}
    for op in cm.get_runtime_model().get_ops():
        ri = op.get_rt_info()
        info[op.get_friendly_name()] = (ri["layerType"].astype(str), ri["originalLayersNames"].astype(str),
                                        [list(i.get_partial_shape().to_shape()) if i.get_partial_shape().is_static
                                         else [] for i in op.inputs()])
    req = cm.create_infer_request()
    req.infer({0: x})
    per = collections.defaultdict(lambda: {"us": 0.0, "nodes": 0})
    other = collections.Counter()
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        req.infer({0: x})
        walls.append(time.perf_counter() - t0)
        for p in req.profiling_info:
            if p.status != p.Status.EXECUTED:
                continue
            _, names, shapes = info.get(p.node_name, (p.node_type, "", []))
            c = classify_ov(p.node_type, names, shapes)
            if c == "other":
                other[p.node_type] += 1
            per[c]["us"] += p.real_time.total_seconds() * 1e6 / runs
            per[c]["nodes"] += 1 / runs
    return {"wall_ms": statistics.median(walls) * 1000, "classes": dict(per), "unclassified": dict(other)}


def machine_limits(threads: int) -> dict:
    """float32 GEMM GFLOP/s and element-wise memory bandwidth GB/s at ``threads`` (medians)."""
    from anyir_edge.bench.worker import gemm_peak  # the same measurement anyir-bench reports

    gemm = gemm_peak({"threads": threads, "size": 1024, "warmup": 3, "runs": 15})["gflops"]
    return {"gemm_gflops": gemm, "bandwidth_gbs": stream_bandwidth(threads, 16 * 2**20)}  # 64 MiB tensors


def stream_bandwidth(threads: int, floats: int) -> float:
    """GB/s of an element-wise add whose three tensors hold ``floats`` float32 each: what any
    element-wise node on activations of that size can move at best (from cache when they fit,
    from memory when not)."""
    import torch

    torch.set_num_threads(threads)
    u, v, w = torch.rand(floats), torch.rand(floats), torch.empty(floats)
    reps = max(15, min(2000, int(2e9 // (12 * floats))))  # ~2 GB moved per measurement
    for _ in range(3):
        torch.add(u, v, out=w)
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.add(u, v, out=w)
        ts.append((time.perf_counter() - t0) / reps)
    return 3 * 4 * floats / statistics.median(ts) / 1e9


def roofline(rec: dict, gemm_gflops: float, bandwidth_gbs: float) -> dict:
    """The fastest this graph could run on this machine, per class: convolutions and matmuls at
    the GEMM peak (or at the bandwidth, if their bytes take longer), every other class's bytes at
    ``bandwidth_gbs`` (views excluded), nodes with neither at 0.  An upper bound on what better
    kernels could give the same graph; only removing nodes or bytes goes past it."""
    bound = {}
    for c, v in rec["classes"].items():
        t_mem = v.get("moved", v.get("bytes", 0.0)) / (bandwidth_gbs * 1e9)
        t_fl = v.get("flops", 0.0) / (gemm_gflops * 1e9) if c in COMPUTE else 0.0
        bound[c] = max(t_mem, t_fl) * 1000
    total_ms = sum(bound.values())
    flops = sum(v.get("flops", 0.0) for v in rec["classes"].values())
    mem_ms = sum(ms for c, ms in bound.items() if c not in COMPUTE)
    return {"classes_ms": bound, "total_ms": total_ms, "memory_ms": mem_ms,
            "peak_pct": 100 * flops / (total_ms / 1000) / 1e9 / gemm_gflops if total_ms else 0.0}


def export_engine(model, name: str, workdir: Path) -> Path:
    from anyir_edge.export import export

    return export(model, to="onnx", output=workdir / f"{name}.onnx", log=lambda m: None).path


def table(rec: dict, limits: dict) -> list[str]:
    total = sum(v["us"] for v in rec["classes"].values()) or 1.0
    lines = [f"#### {rec['model']}, {rec['runtime']}, {rec['size']}x{rec['size']}, {rec['threads']} thread(s): "
             f"{rec['wall_ms']:.0f} ms per image (median), {rec['gflops']:.1f} GFLOP/s overall = "
             f"{100 * rec['gflops'] / limits['gemm_gflops']:.0f} % of GEMM peak", ""]
    roof = rec.get("roofline")
    if roof:
        lines += [f"Bound for this graph (convolutions at the GEMM peak, other bytes at "
                  f"{rec['activation_gbs']:.1f} GB/s, an element-wise add on tensors of this image's "
                  f"largest activation): {roof['total_ms']:.0f} ms, of which {roof['memory_ms']:.0f} ms moving "
                  f"bytes = **{roof['peak_pct']:.0f} % of GEMM peak at best**; the node times sum to "
                  f"{total / 1000:.0f} ms.", ""]
    lines += ["| class | ms | bound ms | % time | nodes | GFLOP | GFLOP/s | % GEMM peak | GB moved | GB/s | % bandwidth |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    bound = (roof or {}).get("classes_ms", {})
    for c in CLASSES:
        v = rec["classes"].get(c)
        if not v or v["us"] <= 0:
            continue
        s = v["us"] / 1e6
        fl, by = v.get("flops", 0.0), v.get("bytes", 0.0)
        comp = c in COMPUTE and fl > 0
        b = f"{bound[c]:.1f}" if c in bound else "-"
        lines.append(f"| {c} | {v['us'] / 1000:.1f} | {b} | {100 * v['us'] / total:.1f} | {v['nodes']:.0f} "
                     f"| {fl / 1e9:.2f} | {fl / s / 1e9:.1f} | {100 * fl / s / 1e9 / limits['gemm_gflops']:.0f} "
                     f"| {by / 1e9:.3f} | {by / s / 1e9:.1f} | {100 * by / s / 1e9 / limits['bandwidth_gbs']:.0f} |"
                     if comp else
                     f"| {c} | {v['us'] / 1000:.1f} | {b} | {100 * v['us'] / total:.1f} | {v['nodes']:.0f} | - | - | - "
                     f"| {by / 1e9:.3f} | {by / s / 1e9:.1f} | {100 * by / s / 1e9 / limits['bandwidth_gbs']:.0f} |"
                     if by else
                     f"| {c} | {v['us'] / 1000:.1f} | {b} | {100 * v['us'] / total:.1f} | {v['nodes']:.0f} | - | - | - | - | - | - |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="anyir,anyir-tiny", help="comma-separated configuration names (random weights)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runtimes", default="onnxruntime,openvino")
    ap.add_argument("--runs", type=int, default=3, help="profiled runs after one warm-up (default 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "profile-ops",
                    help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    from anyir_edge.bench import bench_input, random_model
    from anyir_edge.runtime.backends import cpu_info

    runtimes = args.runtimes.split(",")
    limits = {t: machine_limits(t) for t in args.threads}
    records = []
    with tempfile.TemporaryDirectory(prefix="anyir-profile-") as d:
        work = Path(d)
        for name in args.models.split(","):
            print(f"profile_ops: exporting {name} ...", file=sys.stderr)
            model = random_model(name)
            width = getattr(model.config, "dim", 48)  # the largest activation: dim x H x W
            onnx_path = export_engine(model, name, work)
            for size in args.sizes:
                x = bench_input(size)
                for t in args.threads:
                    act_gbs = stream_bandwidth(t, width * size * size)
                    ort_rec = profile_ort(onnx_path, x, t, args.runs, work)
                    flops = {c: v["flops"] for c, v in ort_rec["classes"].items()}
                    nbytes = {c: v["bytes"] for c, v in ort_rec["classes"].items()}
                    moved = {c: v["moved"] for c, v in ort_rec["classes"].items()}
                    total_flops = sum(flops.values())
                    for rt in runtimes:
                        rec = ort_rec if rt == "onnxruntime" else profile_ov(onnx_path, x, t, args.runs)
                        if rt != "onnxruntime":
                            for c, v in rec["classes"].items():  # the same graph's work, this runtime's time
                                v["flops"], v["bytes"] = flops.get(c, 0.0), nbytes.get(c, 0.0)
                                v["moved"] = moved.get(c, 0.0)
                        rec = {"model": name, "runtime": rt, "size": size, "threads": t, **rec,
                               "gflops": total_flops / (rec["wall_ms"] / 1000) / 1e9, "activation_gbs": act_gbs}
                        rec["roofline"] = roofline(rec, limits[t]["gemm_gflops"], act_gbs)
                        records.append(rec)
                        print(f"  {name} {rt} {size} {t}t: {rec['wall_ms']:.0f} ms, "
                              f"{100 * rec['gflops'] / limits[t]['gemm_gflops']:.0f} % of GEMM peak (at best "
                              f"{rec['roofline']['peak_pct']:.0f} % for this graph)", file=sys.stderr)
    env = {"cpu": cpu_info()["model"], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "limits": limits, "command": "python benchmarks/profile_ops.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = {"environment": env, "records": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=1))
    md = [f"# Time per operator class ({env['cpu']}, {env['date']})", "",
          "Machine limits measured in this run: " + "; ".join(
              f"{t} thread(s): GEMM {v['gemm_gflops']:.1f} GFLOP/s, bandwidth {v['bandwidth_gbs']:.1f} GB/s"
              for t, v in limits.items()), "", f"Command: `{env['command']}`", ""]
    for rec in records:
        md += table(rec, limits[rec["threads"]])
    args.out.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {args.out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
