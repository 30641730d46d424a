#!/usr/bin/env python3
"""Issue #21: channel LayerNorm on ONNX Runtime, as exported today against exact forms without
its transposes.  ``benchmarks/profile_ops.py`` found ONNX Runtime's LayerNormalization nodes
*slower at 2 threads than at 1* on an Intel Xeon (anyir-tiny 512: 106 ms at 1 thread, 201 ms at
2, 19 % of the 2-thread run; OpenVINO's take 39 ms), so every form is timed at both counts:

    layernorm     the CPU deploy form as shipped: NCHW -> NHWC Transpose, LayerNormalization,
                  Transpose back (``anyir_edge.models.layers.LayerNorm2d``)
    reducemean    mean and variance as ReduceMean over the channel axis, in NCHW
    conv-mean     mean and variance as a C -> 1 1x1 convolution with weights 1/C
                  (the phone form's ``ChannelNorm``), then the affine part
    conv-mean-cc  the same as a C -> C 1x1 convolution (every output channel the mean): more
                  MACs, but every tensor keeps C channels, which ONNX Runtime's NCHWc layout takes
    reducemean-c<N  reducemean for the LayerNorms of fewer than N channels, the node for the rest
                  (``ort_layernorm_threads.py``: the node's 2-thread loss is in its short rows)

Each is exported like ``anyir-export --to onnx`` (TorchScript trace with --fft fold, onnxsim)
and run by ONNX Runtime at 224 and 512 on the benchmark photo crop; interleaved, median of N
after a warm-up, in one process, one session per variant.  Every variant is exact up to float
rounding (max abs difference to the shipped form printed).  Results:
``benchmarks/results/layernorm-variants.{md,json}``.

    python benchmarks/layernorm_variants.py --models anyir-tiny,anyir --threads 1 2 --runs 5

2026-12-02, AMD EPYC AVX2, anyir, 1 thread (an earlier version of this script): reducemean
1.171x / 1.215x, conv-mean 1.001x / 1.006x the shipped form at 224 / 512.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from _variants import ort_variants_main
from anyir_edge.export import onnx_export
from anyir_edge.models.deploy import replace_modules
from anyir_edge.models.layers import LayerNorm2d

VARIANTS = ("layernorm", "reducemean", "conv-mean", "conv-mean-cc", "reducemean-c<32", "reducemean-c<64")
RESULTS = Path(__file__).parent / "results"


class _Affine(nn.Module):
    def __init__(self, ln: LayerNorm2d):
        super().__init__()
        if ln.bias is None:
            raise ValueError("only LayerNorm with bias (Restormer's 'WithBias') is rewritten here")
        self.w = nn.Parameter(ln.weight.detach().view(1, -1, 1, 1).clone())
        self.b = nn.Parameter(ln.bias.detach().view(1, -1, 1, 1).clone())
        self.eps = ln.eps

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.mean(x)
        return d * torch.rsqrt(self.mean(d * d) + self.eps) * self.w + self.b


class ReduceMeanNorm(_Affine):
    def mean(self, x):
        return x.mean(1, keepdim=True)


class ConvMeanNorm(_Affine):
    def __init__(self, ln: LayerNorm2d, broadcast: bool):
        super().__init__(ln)
        c = ln.weight.numel()
        self.m = nn.Conv2d(c, c if broadcast else 1, 1, bias=False)
        nn.init.constant_(self.m.weight, 1.0 / c)

    def mean(self, x):
        return self.m(x)


def _below(channels: int):
    """ReduceMeanNorm for the LayerNorms of fewer than ``channels`` channels, the node elsewhere."""
    return lambda ln: ReduceMeanNorm(ln) if ln.weight.numel() < channels else ln


MAKE = {"reducemean": ReduceMeanNorm, "conv-mean": lambda ln: ConvMeanNorm(ln, False),
        "conv-mean-cc": lambda ln: ConvMeanNorm(ln, True), "reducemean-c<32": _below(32), "reducemean-c<64": _below(64)}


def export_variant(model, variant: str, folder: Path) -> Path:
    """``model`` with every LayerNorm2d (with bias) replaced, exported (``trace`` applies the
    CPU deploy form, which leaves the norms alone)."""
    net = copy.deepcopy(model)
    if variant != "layernorm":
        replace_modules(net, LayerNorm2d, MAKE[variant])
    path = folder / f"{variant.replace('<', '-lt')}.onnx"
    onnx_export.trace(net.eval(), str(path), "fold")
    onnx_export.finalize(str(path), {})
    return path


def main(argv=None) -> int:
    return ort_variants_main(argv, __doc__, "layernorm_variants.py", VARIANTS, export_variant, str(RESULTS / "layernorm-variants"),
                             "Channel LayerNorm forms on ONNX Runtime",
                             "the shipped form's (Transpose, LayerNormalization, Transpose; see the script's docstring)")


if __name__ == "__main__":
    raise SystemExit(main())
