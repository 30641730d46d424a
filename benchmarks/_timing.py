"""Timing shared by the benchmark scripts: interleaved runs, so that a slow spell of the machine
(another process, thermal or frequency changes) hits every variant alike."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved_medians(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """{name: median milliseconds} of ``runs`` rounds, each calling every function once in order
    (warm up before calling this)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) * 1000 for name, ts in times.items()}
