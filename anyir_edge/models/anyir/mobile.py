"""AnyIR's mobile deploy form (:mod:`anyir_edge.models.mobile`): one image at a time, every
operator one that ExecuTorch's XNNPACK delegate (and LiteRT / Core ML / NCNN) takes whole.

Applied on top of the CPU deploy form (:func:`anyir_edge.models.anyir.deploy`: BatchNorm
folded, channels padded to multiples of 8).  Per block:

* LayerNorm -> :class:`~anyir_edge.models.mobile.ChannelNorm`; its affine part and the
  even / odd channel split (stepped slices) go into the 1x1 convolutions that read it: q, k
  and v each become one convolution of the whole normalised input, the odd half one
  selection convolution;
* ``qkv`` + its depthwise conv + ``chunk(3)`` -> three convolutions and three depthwise convs;
  GatedDA's expansion + ``split`` -> three convolutions, tau's tiling onto alpha a 0/1 matrix,
  and ``W_gate(cat(beta, alpha))`` -> ``W_beta'(x) + W_alpha(alpha)`` with W_gate's beta
  columns composed into beta's expansion (no concatenation);
* fusion: ``project_out(lam * cat(a + s(g), g + s(a)) + (1 - lam) * repeat2(a + g))`` (the
  frequency path in its exact "fold" form) is ``A_1 (a + s(g)) + A_2 (g + s(a)) + A_3 (a + g)``
  with A_1 = lam W_1, A_2 = lam W_2, A_3 = (1 - lam)(W_even + W_odd), computed as
  ``M cat(a, g) + M' sigmoid(cat(a, g))`` with M = [A_1 + A_3 | A_2 + A_3], M' = [A_2 | A_1]: one
  concatenation of C channels and one sigmoid instead of two sigmoids, three additions and a
  concatenation of 3C/2 (XNNPACK on x86, 1 thread: a full-resolution 32-channel block ~2-4 %
  faster; with the W_gate change, the whole anyir-tiny 2.8 % at 224 and 5.0 % at 512);
* GatedDA's 7x7 depthwise convolution -> three single-pass (7 x 3) pieces
  (:class:`~anyir_edge.models.mobile.SplitDepthwise`);
* down / up sampling -> one strided (transposed) convolution each;
* the output convolution (2C -> 3) -> :func:`~anyir_edge.models.mobile.narrow_output_conv`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..deploy import replace_modules
from ..layers import Resample
from ..mobile import (
    ChannelAttentionB1,
    MobileFFN,
    compose_1x1,
    conv_from_matrix,
    fast_depthwise,
    fold_affine_into_conv,
    mobile_resample,
    narrow_output_conv,
    norm_parts,
    split_rows,
)
from .model import AnyIR, Block


def fusion_matrices(attn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The block's fusion + ``project_out`` (frequency path in its exact "fold" form) is
    ``A_1 (a + s(g)) + A_2 (g + s(a)) + A_3 (a + g) + bias`` with A_1 = lam W_1, A_2 = lam W_2 (the
    two halves of ``project_out``'s columns), A_3 = (1 - lam)(W_even + W_odd): (A_1, A_2, A_3, bias)."""
    half = attn.project_out.out_channels // 2
    w, lam = attn.project_out.weight.detach()[:, :, 0, 0], attn.lam.detach()
    bias = attn.project_out.bias.detach() if attn.project_out.bias is not None else None
    return lam * w[:, :half], lam * w[:, half:], (1 - lam) * (w[:, 0::2] + w[:, 1::2]), bias


def fused_projection(attn) -> nn.Conv2d:
    """:func:`fusion_matrices` as one 1x1 convolution of ``cat(a + s(g), g + s(a), a + g)``."""
    a1, a2, a3, bias = fusion_matrices(attn)
    return conv_from_matrix(torch.cat([a1, a2, a3], dim=1), bias)


def fused_projection_pair(attn) -> tuple[nn.Conv2d, nn.Conv2d]:
    """:func:`fusion_matrices` regrouped by what it multiplies, ``(A_1 + A_3) a + (A_2 + A_3) g +
    A_2 s(a) + A_1 s(g)``: two 1x1 convolutions, of ``cat(a, g)`` and of its sigmoid."""
    a1, a2, a3, bias = fusion_matrices(attn)
    return (conv_from_matrix(torch.cat([a1 + a3, a2 + a3], dim=1), bias),
            conv_from_matrix(torch.cat([a2, a1], dim=1)))


class MobileBlock(nn.Module):
    """One AnyIR block (CPU deploy form) in the mobile form; see the module docstring."""

    def __init__(self, block: Block, keep_layernorm: bool = False, split_depthwise: bool = True):
        super().__init__()
        attn, gda, ffn = block.attn, block.attn.gatedcnn, block.ffn
        dim = attn.project_out.out_channels
        half = dim // 2
        even, odd = torch.arange(0, dim, 2), torch.arange(1, dim, 2)
        self.norm1, w1, b1 = norm_parts(block.norm1, keep_layernorm)
        q, k, v = split_rows(attn.qkv, (half,) * 3)
        self.to_q, self.to_k, self.to_v = (fold_affine_into_conv(c, w1, b1, even) for c in (q, k, v))
        self.dw_q, self.dw_k, self.dw_v = split_rows(attn.qkv_dwconv, (half,) * 3)
        self.temperature = attn.temperature
        self.attention = ChannelAttentionB1(half, attn.heads)
        self.to_odd = fold_affine_into_conv(conv_from_matrix(torch.eye(half)), w1, b1, odd)
        # GatedDA (BatchNorm already folded: DeployGatedDA)
        # alpha at its real width n: the CPU form's zero channels (ONNX Runtime's blocked kernels
        # want multiples of 8) are only extra work for XNNPACK
        c, n = gda.gate.splits[0], gda.alpha_channels
        self.exp_gamma, exp_beta, self.exp_alpha = split_rows(gda.W_exp, (c, c, n))
        self.register_buffer("scale", gda.scale.clone())
        self.register_buffer("shift", gda.shift.clone())
        self.tau = gda.gate.tau
        self.tile = conv_from_matrix(torch.eye(c).repeat(-(-n // c), 1)[:n])
        self.W_depth = fast_depthwise(split_rows(gda.gate.W_depth, (n,))[0], split_depthwise)
        # W_gate(cat(beta, alpha)), beta = exp_beta(x): W_gate's beta columns composed with
        # exp_beta (one c -> c convolution of x) plus its alpha columns on alpha
        w_gate = gda.gate.W_gate.weight.detach()[:, :, 0, 0]
        self.gate_beta = compose_1x1(conv_from_matrix(w_gate[:, :c]), exp_beta)
        self.gate_alpha = conv_from_matrix(w_gate[:, c:c + n])
        self.W_proj = gda.gate.W_proj
        self.gate_eps = gda.gate.eps
        self.fuse_ag, self.fuse_sigmoid = fused_projection_pair(attn)
        # FFN: LayerNorm's affine part into both branches' input convolutions
        self.ffn = MobileFFN(block.norm2, ffn, keep_layernorm)

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mu).pow(2).mean(dim=(2, 3), keepdim=True)
        tau = self.tau * torch.sigmoid(self.scale * mu + self.shift + torch.sqrt(self.scale * self.scale * var
                                                                                   + self.gate_eps))
        alpha = self.W_depth(self.exp_alpha(x)) * (self.tile(tau) + 1.0)
        gated = torch.sigmoid(self.exp_gamma(x)) * (self.gate_beta(x) + self.gate_alpha(alpha))
        return self.W_proj(gated + x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        a = self.attention(self.dw_q(self.to_q(y)), self.dw_k(self.to_k(y)), self.dw_v(self.to_v(y)), self.temperature)
        g = self.gated(self.to_odd(y))
        ag = torch.cat([a, g], dim=1)
        x = x + (self.fuse_ag(ag) + self.fuse_sigmoid(torch.sigmoid(ag)))
        return x + self.ffn(x)


def mobile(model: AnyIR, keep_layernorm: bool = False, split_depthwise: bool = True,
           strided_resample: bool = True, narrow_output: bool = True, target: str | None = None) -> AnyIR:
    """The CPU deploy form of ``model`` (modified in place) in the mobile form, the same for every
    phone ``target``.  The options
    leave single rewrites out (all exact either way), for measuring what each is worth on a
    runtime (``benchmarks/mobile_rewrites_ort.py``): the LayerNorm as it is, the 7x7 depthwise
    convolution whole, the down / up sampling as conv + pixel (un)shuffle, the output convolution
    as it is."""
    replace_modules(model, Block, lambda b: MobileBlock(b, keep_layernorm, split_depthwise))
    if narrow_output:
        model.output = narrow_output_conv(model.output)
    return replace_modules(model, Resample, mobile_resample) if strided_resample else model
