"""MoCE-IR's mobile deploy form (:mod:`anyir_edge.models.mobile`): one image at a time, in
operators phone delegates (ExecuTorch's XNNPACK, LiteRT, Core ML) take.

Applied on top of the CPU deploy form (:func:`anyir_edge.models.moce_ir.deploy`: FFNs split and
padded to multiples of 8):

* encoder and refinement blocks -> :class:`~anyir_edge.models.mobile.MobileTransformerBlock`;
* decoder blocks -> :class:`MobileDecoderBlock`: one channel norm shared by the block's two 1x1
  projections, the first composed into the shared attention's q / k / v, the cross attention's
  ``kv`` + ``chunk`` as two convolutions, its 7x7 depthwise convs as single-pass pieces;
* every expert -> :class:`MobileExpert`: its input projection composed into the expert
  attention's q / k / v, and the patch spectral product (``irfft2(rfft2(q) * rfft2(k))`` on
  p x p patches; 6-D reshapes and batched matrix products in the CPU form) as strided
  convolutions (:class:`PatchSpectralProduct`);
* down / up sampling -> one strided (transposed) convolution each.

The router (a global mean, two small linear layers, softmax, top-k) and the frequency embedding
stay as they are: vectors of a few hundred numbers per image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..deploy import replace_modules
from ..layers import Resample
from ..mobile import (
    ChannelAttentionB1,
    Float32Only,
    MobileFFN,
    MobileMDTA,
    MobileTransformerBlock,
    compose_1x1,
    fast_depthwise,
    fold_affine_into_conv,
    mobile_resample,
    narrow_output_conv,
    norm_parts,
    split_rows,
)
from .model import CrossAttention, DecoderBlock, EncoderBlock, FFTAttention, ModExpert, MoCEIR, PatchDFT


def _grouped(conv_cls, cin: int, cout: int, kernel: tuple[int, int], groups: int, weight: torch.Tensor):
    """A bias-free grouped (transposed) convolution of stride ``kernel`` with the given weight."""
    out = conv_cls(cin, cout, kernel, stride=kernel, groups=groups, bias=False)
    with torch.no_grad():
        out.weight.copy_(weight.reshape(out.weight.shape))
    out.weight.requires_grad_(False)
    return out


class PatchSpectralProduct(Float32Only, nn.Module):
    """``irfft2(rfft2(q) * rfft2(k), s=(p, p))`` on each p x p patch of each channel (q and k
    zero-padded at the bottom / right to whole patches, the result cropped back), the DFTs as
    separable strided convolutions instead of patch reshapes and matrix products.

    The channels go to the batch axis first (``(1, C, H, W) -> (C, 1, H, W)``, a transpose of a
    size-1 axis: one image at a time, no arithmetic on the run-time size), so one set of DFT
    weights serves every channel and the constants do not grow with the width:

    * along W: ``Conv2d(1, K, (1, p), stride (1, p))`` with the cos (and -sin) rows of the real
      DFT (K = p // 2 + 1): channel j is coefficient j of a patch row;
    * along H: ``Conv2d(K, K*p, (p, 1), stride (p, 1), groups=K)`` with the cos / sin of the
      complex DFT: channel j*p + u holds coefficient (u, j);
    * the product is element-wise on those channels; the inverse runs the same steps backwards
      as transposed convolutions with the inverse DFT's matrices (PatchDFT's, its 1/p^2 and
      Hermitian weights folded in).

    Constants: 4 K p^2 + 4 K p numbers whatever the width (p = 32: 71,808), where per-channel
    grouped convolutions would tile them C times.  The same arithmetic as
    :class:`~anyir_edge.models.moce_ir.model.PatchDFT`."""

    def __init__(self, dft: PatchDFT):
        super().__init__()
        p, k = dft.ch.shape[0], dft.cw.shape[1]
        self.p = p
        conv, tconv = nn.Conv2d, nn.ConvTranspose2d
        self.w_cos = _grouped(conv, 1, k, (1, p), 1, dft.cw.T)
        self.w_sin = _grouped(conv, 1, k, (1, p), 1, -dft.sw.T)
        self.h_cos = _grouped(conv, k, k * p, (p, 1), k, dft.ch.repeat(k, 1))
        self.h_sin = _grouped(conv, k, k * p, (p, 1), k, dft.sh.repeat(k, 1))
        self.ih_cos = _grouped(tconv, k * p, k, (p, 1), k, dft.ch.T.repeat(k, 1))
        self.ih_sin = _grouped(tconv, k * p, k, (p, 1), k, dft.sh.T.repeat(k, 1))
        self.iw_cos = _grouped(tconv, k, 1, (1, p), 1, dft.icw)
        self.iw_sin = _grouped(tconv, k, 1, (1, p), 1, dft.isw)

    def spectrum(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        re, im = self.w_cos(x), self.w_sin(x)
        return self.h_cos(re) + self.h_sin(im), self.h_cos(im) - self.h_sin(re)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if q.shape[0] != 1:
            raise ValueError(f"the mobile form runs one image at a time, got a batch of {q.shape[0]}")
        h, w = q.shape[-2], q.shape[-1]
        # p - 1 zeros at the bottom / right: the stride-p DFTs see ceil(H / p) windows (the last
        # one's data plus zeros) and drop the all-zero rest, as padding to a multiple of p would,
        # with no arithmetic on the run-time size (a modulo Core ML cannot convert)
        pad = (0, self.p - 1, 0, self.p - 1)
        qr, qi = self.spectrum(F.pad(q.transpose(0, 1), pad))
        kr, ki = self.spectrum(F.pad(k.transpose(0, 1), pad))
        re, im = qr * kr - qi * ki, qr * ki + qi * kr
        re1, im1 = self.ih_cos(re) - self.ih_sin(im), self.ih_cos(im) + self.ih_sin(re)
        return (self.iw_cos(re1) - self.iw_sin(im1))[:, :, :h, :w].transpose(0, 1)


class RowsInverse(nn.Module):
    """A grouped transposed convolution of kernel = stride = (p, 1), each group p channels in and
    one out (:class:`PatchSpectralProduct`'s inverse DFT along H), as a grouped 1x1 convolution
    (each group p channels in, p out) and a depth-to-space along H: the same numbers for LiteRT,
    whose ``TRANSPOSE_CONV`` has no groups (litert-torch converts a grouped one into a model that
    fails when it is prepared)."""

    def __init__(self, t: nn.ConvTranspose2d):
        super().__init__()
        k, p = t.out_channels, t.kernel_size[0]
        if (t.groups != k or t.in_channels != k * p or tuple(t.stride) != (p, 1) or t.kernel_size[1] != 1
                or t.bias is not None):
            raise ValueError("RowsInverse takes a bias-free transposed convolution of kernel = stride = (p, 1), "
                             "p channels in and one out per group")
        self.k, self.p = k, p
        w = t.weight.detach()[:, 0, :, 0].reshape(k, p, p)  # [group j, input u, output row t]
        self.conv = _grouped(nn.Conv2d, k * p, k * p, (1, 1), k, w.transpose(1, 2).reshape(k * p, p, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # channel j * p + t: output row t of each window of group j
        b, _, hb, w = y.shape
        return y.view(b, self.k, self.p, hb, w).transpose(2, 3).reshape(b, self.k, hb * self.p, w)


class MobileExpert(nn.Module):
    """One expert (:class:`~anyir_edge.models.moce_ir.model.ModExpert`) with its attention
    (:class:`~anyir_edge.models.moce_ir.model.FFTAttention`) in the mobile form:
    ``x + proj2((norm(P(q, k)) * v) W_out * silu(proj1(shared)))``, q / k / v read x through
    the input projection composed into their 1x1 convolutions."""

    def __init__(self, expert: ModExpert):
        super().__init__()
        body: FFTAttention = expert.body
        first, rank = expert.proj[0], body.q.in_channels
        self.to_q = compose_1x1(body.q, first)
        self.to_k, self.to_v = (compose_1x1(c, first) for c in split_rows(body.kv, (rank, rank)))
        self.dw_q = body.q_dwconv
        self.dw_k, self.dw_v = (fast_depthwise(c) for c in split_rows(body.kv_dwconv, (rank, rank)))
        self.product = PatchSpectralProduct(body.dft)
        self.norm, w, b = norm_parts(body.norm)
        self.register_buffer("norm_weight", w.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("norm_bias", (torch.zeros_like(w) if b is None else b).detach().view(1, -1, 1, 1).clone())
        self.proj_out, self.to_gate, self.to_out = body.proj_out, expert.proj[1], expert.proj[2]

    def forward(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        q, k, v = self.dw_q(self.to_q(x)), self.dw_k(self.to_k(x)), self.dw_v(self.to_v(x))
        y = self.product(q, k)
        y = self.proj_out((self.norm(y) * self.norm_weight + self.norm_bias) * v)
        return x + self.to_out(y * F.silu(self.to_gate(shared)))


class MobileCrossAttention(nn.Module):
    """:class:`~anyir_edge.models.moce_ir.model.CrossAttention`: ``kv`` + its 7x7 depthwise conv +
    ``chunk(2)`` as two convolutions and two single-pass depthwise convs, the batch-1 attention."""

    def __init__(self, attn: CrossAttention):
        super().__init__()
        dim = attn.q.out_channels
        self.to_q, self.dw_q = attn.q, attn.q_dwconv
        self.to_k, self.to_v = split_rows(attn.kv, (dim, dim))
        self.dw_k, self.dw_v = (fast_depthwise(c) for c in split_rows(attn.kv_dwconv, (dim, dim)))
        self.temperature = attn.temperature
        self.attention = ChannelAttentionB1(dim, attn.heads)
        self.project_out = attn.project_out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q = self.dw_q(self.to_q(x))
        k, v = self.dw_k(self.to_k(y)), self.dw_v(self.to_v(y))
        return self.project_out(self.attention(q, k, v, self.temperature))


class MobileDecoderBlock(nn.Module):
    """:class:`~anyir_edge.models.moce_ir.model.DecoderBlock`: the first norm computed once (its
    affine part folded into both projections), ``proj[0]`` composed into the shared attention,
    the adapter's experts and the cross attention in the mobile form, the FFN a MobileFFN."""

    def __init__(self, block: DecoderBlock):
        super().__init__()
        self.shared = MobileMDTA(block.norms[0], block.shared, pre=block.proj[0])
        _, w, b = norm_parts(block.norms[0])
        self.to_adapter = fold_affine_into_conv(block.proj[1], w, b)
        self.adapter = replace_modules(block.adapter, ModExpert, MobileExpert)
        self.mixer = MobileCrossAttention(block.mixer)
        self.ffn = MobileFFN(block.norms[1], block.ffn)

    def forward(self, x: torch.Tensor, freq_emb: torch.Tensor) -> torch.Tensor:
        n = self.shared.norm(x)
        s = self.shared.attend(n)
        a = self.adapter(self.to_adapter(n), freq_emb, s)
        x = self.mixer(a, s) + x
        return x + self.ffn(x)


def _encoder_block(block: EncoderBlock) -> MobileTransformerBlock:
    return MobileTransformerBlock(block.norms[0], block.mixer, block.norms[1], block.ffn)


def mobile(model: MoCEIR, target: str | None = None) -> MoCEIR:
    """The CPU deploy form of ``model`` (modified in place) in the mobile form; for ``target``
    "litert" the patch spectral products' grouped transposed convolutions as :class:`RowsInverse`."""
    replace_modules(model, EncoderBlock, _encoder_block)
    replace_modules(model, DecoderBlock, MobileDecoderBlock)
    model = replace_modules(model, Resample, mobile_resample)
    model.output = narrow_output_conv(model.output)
    if target == "litert":
        for m in model.modules():
            if isinstance(m, PatchSpectralProduct):
                m.ih_cos, m.ih_sin = RowsInverse(m.ih_cos), RowsInverse(m.ih_sin)
    return model
