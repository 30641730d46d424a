#!/usr/bin/env python3
"""Issue #21: which of AnyIR's mobile-form rewrites (``anyir_edge/models/anyir/mobile.py``) pay
on ONNX Runtime, one at a time.  The whole mobile form as the ORT engine's form was mixed
(0.93-1.05x the CPU form, stop 27), so the rewrites are peeled off cumulatively:

    cpu                the CPU deploy form (what ``anyir-export --to onnx`` ships)
    folds              the CPU form with only the copy-removing block rewrites: the even / odd
                       channel split folded into ``qkv`` (kept one convolution) and a selection
                       convolution, fusion + project_out as one convolution; no extra nodes
    blocks             the block rewrites only: q / k / v and GatedDA's expansion as separate
                       convolutions, LayerNorm's affine and the even / odd channel split folded
                       into the convolutions that read it, fusion + project_out as two
                       convolutions, of cat(a, g) and of its sigmoid, W_gate's concatenation
                       as a sum of two convolutions; LayerNorm, the 7x7
                       depthwise and pixel (un)shuffle as in the CPU form
    +resample          ... and down / up sampling as one strided (transposed) convolution
    +split-7x7         ... and GatedDA's 7x7 depthwise as three 7x3 pieces
    mobile             ... and LayerNorm as channel-mean convolutions, the output convolution as
                       1x1 + one-hot depthwise + 1x1: the whole mobile form

Each is exported like ``anyir-export --to onnx`` (TorchScript trace with --fft fold, onnxsim)
and run by ONNX Runtime at 224 and 512 on a real photo crop; interleaved, median of N after a
warm-up, in one process, one session per variant.  Every variant is exact (max abs difference
to the CPU form printed).  Results: ``benchmarks/results/mobile-rewrites-ort.{md,json}``.

    python benchmarks/mobile_rewrites_ort.py --models anyir-tiny,anyir --threads 1 2 --runs 5
"""
from __future__ import annotations

import contextlib
import copy
import importlib
from pathlib import Path

import torch

from _variants import ort_variants_main
from anyir_edge.export import onnx_export
from anyir_edge.models import get_architecture
from anyir_edge.models.deploy import replace_modules
from anyir_edge.models.layers import channel_attention

M = importlib.import_module("anyir_edge.models.anyir.mobile")  # the package exports a function of that name
VARIANTS = ("cpu", "folds", "blocks", "+resample", "+split-7x7", "mobile")
RESULTS = Path(__file__).parent / "results"


class FoldsBlock(torch.nn.Module):
    """A CPU-form AnyIR block with the even / odd split and the fusion folded into convolutions
    (the ``folds`` variant)."""

    def __init__(self, block):
        super().__init__()
        attn = block.attn
        dim = attn.project_out.out_channels
        half, ones = dim // 2, torch.ones(dim)
        even, odd = torch.arange(0, dim, 2), torch.arange(1, dim, 2)
        self.norm1, self.norm2, self.ffn = block.norm1, block.norm2, block.ffn
        self.to_qkv = M.fold_affine_into_conv(attn.qkv, ones, None, even)
        self.qkv_dwconv, self.heads, self.temperature = attn.qkv_dwconv, attn.heads, attn.temperature
        self.to_odd = M.fold_affine_into_conv(M.conv_from_matrix(torch.eye(half)), ones, None, odd)
        self.gda = attn.gatedcnn
        self.fuse = M.fused_projection(attn)

    def forward(self, x):
        y = self.norm1(x)
        q, k, v = self.qkv_dwconv(self.to_qkv(y)).chunk(3, dim=1)
        a = channel_attention(q, k, v, self.heads, self.temperature)
        g = self.gda(self.to_odd(y))
        x = x + self.fuse(torch.cat([a + torch.sigmoid(g), g + torch.sigmoid(a), a + g], dim=1))
        return x + self.ffn(self.norm2(x))


def build(model, variant: str):
    """``model`` in the deploy form ``variant`` (see the module docstring)."""
    arch = get_architecture(model)
    if variant == "cpu":
        return arch.deploy_copy(model, "cpu")
    if variant == "folds":
        return replace_modules(arch.deploy_copy(model, "cpu"), M.Block, FoldsBlock).eval()
    if variant == "mobile":
        return arch.deploy_copy(model, "mobile")
    # the mobile form with rewrites left out (its builder's options): LayerNorm kept throughout,
    # the 7x7 depthwise split from +split-7x7 on, the strided resamplers from +resample on
    return M.mobile(arch.deploy_copy(model, "cpu"), keep_layernorm=True, narrow_output=False,
                    split_depthwise=variant == "+split-7x7", strided_resample=variant != "blocks").eval()


@contextlib.contextmanager
def _as_is(arch):
    """``onnx_export.trace`` takes the given module as the deploy form (it is one already)."""
    old = type(arch).deploy_copy
    type(arch).deploy_copy = lambda self, m, form="cpu": copy.deepcopy(m).eval()
    try:
        yield
    finally:
        type(arch).deploy_copy = old


def export_variant(model, variant: str, folder: Path) -> Path:
    net = build(model, variant)
    path = folder / f"{variant.strip('+')}.onnx"
    with _as_is(get_architecture(model)):
        onnx_export.trace(net, str(path), "fold")
    onnx_export.finalize(str(path), {})
    return path


def main(argv=None) -> int:
    return ort_variants_main(argv, __doc__, "mobile_rewrites_ort.py", VARIANTS, export_variant, str(RESULTS / "mobile-rewrites-ort"),
                             "AnyIR's mobile rewrites on ONNX Runtime, one at a time",
                             "the CPU form's (what `anyir-export --to onnx` ships); each variant adds one rewrite to the one before (see the script's docstring)")


if __name__ == "__main__":
    raise SystemExit(main())
