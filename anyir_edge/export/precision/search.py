"""Parity probes and the bisection that finds which nodes must stay in higher precision."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np


DEFAULT_MAX_EVALS = 24     # parity evaluations a bisection may spend


class ParityProbe:
    """Min PSNR of a candidate engine file against the PyTorch FP32 reference on fixed inputs
    (the reference outputs computed once); the cheap inner loop of the bisections."""

    def __init__(self, model, inputs, threads: int | None = None):
        import copy

        import torch

        ref_model = model if model.fft_mode == "fft" else copy.deepcopy(model).set_fft_mode("fft")
        ref_model.eval()
        self.threads = threads
        self.items = []
        for _, _, _, img in inputs:
            x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
            with torch.inference_mode():
                self.items.append((x, ref_model(torch.from_numpy(x)).numpy()))
        self.evals = 0

    def __call__(self, engine_path) -> float:
        from ...runtime import EngineWarning, Restorer
        from ..parity import psnr

        self.evals += 1
        try:
            with warnings.catch_warnings():  # a candidate is judged by its parity here, not warned about
                warnings.simplefilter("ignore", EngineWarning)
                with Restorer.open(str(engine_path), device="cpu", threads=self.threads) as r:
                    vals = [psnr(r.forward(x), ref) for x, ref in self.items]
        except Exception:
            return float("-inf")
        vals = [v if np.isfinite(v) else float("-inf") for v in vals]
        return min(vals)


def bisect_keep(candidates: list[str], passes: Callable[[list[str]], bool], max_evals: int = DEFAULT_MAX_EVALS,
                log: Callable[[str], None] | None = None) -> list[str] | None:
    """A contiguous window of ``candidates`` (topological order) that, kept in higher precision,
    makes ``passes`` true; None when even keeping all of them fails.  ``passes([])`` is assumed
    false (the caller tried that).  Two binary searches (shortest passing prefix, then shortest
    passing suffix of it), each step one ``passes`` call; when ``max_evals`` runs out the last
    window known to pass is returned."""
    n = len(candidates)
    if n == 0 or not passes(list(candidates)):
        return None
    evals = 1
    bad, good = 0, n                       # passes(c[:bad]) false, passes(c[:good]) true
    while good - bad > 1 and evals < max_evals:
        mid = (bad + good) // 2
        evals += 1
        if passes(candidates[:mid]):
            good = mid
        else:
            bad = mid
    end = good
    ok, no = 0, end                        # passes(c[ok:end]) true, passes(c[no:end]) false (empty)
    while no - ok > 1 and evals < max_evals:
        mid = (ok + no) // 2
        evals += 1
        if passes(candidates[mid:end]):
            ok = mid
        else:
            no = mid
    window = list(candidates[ok:end])
    if log:
        log(f"  bisection: {len(window)} of {n} nodes kept in higher precision after {evals} parity runs")
    return window
