"""One benchmark measurement in a fresh process (so peak RSS belongs to one engine alone).

``python -m anyir_edge.bench.worker SPEC.json`` reads a spec, opens the engine, times
``Restorer.forward`` on the input array (warm-up runs, then ``runs`` timed runs), writes the
last output next to the spec, optionally evaluates PSNR/SSIM on a data set, and prints one
JSON line with the results.
"""
from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    """Peak RSS of this process.  VmHWM belongs to this exec'd image; ru_maxrss is not used
    because on Linux it starts from the parent's RSS at fork (the parent holds the reference)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def gemm_peak(spec: dict) -> dict:
    """This machine's float32 GEMM rate at the bench's thread count: an n x n matmul (torch's
    BLAS), median of ``runs`` after warm-up, as GFLOP/s (2 n^3 flops per product)."""
    import statistics

    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    n = int(spec.get("size", 1024))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    c = torch.empty(n, n)
    for _ in range(int(spec.get("warmup", 3))):
        torch.matmul(a, b, out=c)
    times = []
    for _ in range(int(spec.get("runs", 15))):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return {"gflops": 2 * n**3 / statistics.median(times) / 1e9, "n": n, "threads": torch.get_num_threads()}


def measure(spec: dict) -> dict:
    if spec.get("kind") == "gemm":
        return gemm_peak(spec)
    import numpy as np

    from ..runtime import Restorer
    from ..runtime import backends

    base_rss = _current_rss_mb()
    threads = spec.get("threads")
    if spec["backend"] == "torch":
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        r = Restorer(backends.get("torch")(spec["artifact"], device=spec.get("device"), threads=threads,
                                  fft_mode=spec.get("torch_fft", "fft")))
    else:
        r = Restorer.open(spec["artifact"], backend=spec["backend"], device=spec.get("device"), threads=threads)
    x = np.load(spec["input"])
    for _ in range(int(spec["warmup"])):
        y = r.forward(x)
    times = []
    for _ in range(int(spec["runs"])):
        t0 = time.perf_counter()
        y = r.forward(x)
        times.append(time.perf_counter() - t0)
    np.save(spec["output"], y)
    res = {"times_s": times, "peak_rss_mb": _rss_mb(), "base_rss_mb": base_rss, "engine": r.describe()}
    if spec.get("eval_set"):
        from ..eval import evaluate, resolve_sets

        def restore(img):
            return r.restore(img)

        ev = evaluate(restore, resolve_sets([spec["eval_set"]]), __import__("pathlib").Path(spec["data"]),
                      limit=spec.get("limit"), progress=False)
        s = next(iter(ev["sets"].values()))
        res["quality"] = {"set": spec["eval_set"], "n": s["n"], "psnr": s["model"]["psnr"], "ssim": s["model"]["ssim"],
                          "input_psnr": s["input"]["psnr"]}
    return res


def main() -> int:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    try:
        res = measure(spec)
    except Exception as e:  # reported to the parent as a status, not a traceback
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        res = {"error": msg[:300]}
    print("ANYIR_BENCH_RESULT " + json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
