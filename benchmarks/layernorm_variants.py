#!/usr/bin/env python3
"""A rejected rewrite candidate (issue #21), kept so it can be re-measured on another CPU:
channel LayerNorm as exported today (NCHW -> NHWC transpose, LayerNormalization, back) against
two exact forms without the transposes: ReduceMean over the channel axis, and channel means as
a 1 x C 1x1 convolution with weights 1/C.  ONNX Runtime, random weights, interleaved runs,
median (5 at 224, 3 at 512).

    python benchmarks/layernorm_variants.py [MODEL=anyir] [THREADS=1]

2026-12-02, AMD EPYC AVX2, anyir, 1 thread: ReduceMean 1.171x / 1.215x, conv means
1.001x / 1.006x the LayerNormalization graph at 224 / 512 (max abs difference 1.9e-6): kept as is.
"""
import copy, statistics, sys, tempfile, time
import numpy as np, torch
from torch import nn
import onnxruntime as ort
from anyir_edge.bench import random_model, bench_input
from anyir_edge.models.layers import LayerNorm2d
from anyir_edge.models.deploy import replace_modules
from anyir_edge.models import get_architecture
from anyir_edge.export import onnx_export

class LNReduce(nn.Module):
    def __init__(self, ln):
        super().__init__(); self.w = nn.Parameter(ln.weight.detach().view(1,-1,1,1).clone()); self.b = nn.Parameter(ln.bias.detach().view(1,-1,1,1).clone()); self.eps = ln.eps
    def forward(self, x):
        mu = x.mean(1, keepdim=True); d = x - mu
        var = (d * d).mean(1, keepdim=True)
        return d * torch.rsqrt(var + self.eps) * self.w + self.b

class LNConv(nn.Module):
    def __init__(self, ln):
        super().__init__(); c = ln.weight.numel()
        self.m = nn.Conv2d(c, 1, 1, bias=False); nn.init.constant_(self.m.weight, 1.0 / c)
        self.w = nn.Parameter(ln.weight.detach().view(1,-1,1,1).clone()); self.b = nn.Parameter(ln.bias.detach().view(1,-1,1,1).clone()); self.eps = ln.eps
    def forward(self, x):
        d = x - self.m(x)
        return d * torch.rsqrt(self.m(d * d) + self.eps) * self.w + self.b

name = sys.argv[1] if len(sys.argv) > 1 else "anyir"
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
base = random_model(name)
arch = get_architecture(base)
variants = {"layernorm": None, "reducemean": LNReduce, "conv-mean": LNConv}
sess = {}
tmp = tempfile.mkdtemp(prefix="anyir-ln-")
for v, cls in variants.items():
    m = copy.deepcopy(base)
    if cls: replace_modules(m, LayerNorm2d, cls)
    p = f"{tmp}/{name}-{v}.onnx"
    onnx_export.trace(m, p, "fold")
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    sess[v] = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
for size in (224, 512):
    x = bench_input(size)
    xp = np.ascontiguousarray(x)
    outs = {v: s.run(None, {s.get_inputs()[0].name: xp})[0] for v, s in sess.items()}
    for v in outs: print(size, v, "max abs vs layernorm", float(np.abs(outs[v]-outs["layernorm"]).max()))
    times = {v: [] for v in sess}
    for r in range(5 if size == 224 else 3):
        for v, s in sess.items():
            t = time.perf_counter(); s.run(None, {s.get_inputs()[0].name: xp}); times[v].append(time.perf_counter() - t)
    med = {v: statistics.median(t) * 1000 for v, t in times.items()}
    print(size, {v: f"{m:.0f} ms ({m / med['layernorm']:.3f})" for v, m in med.items()}, flush=True)
