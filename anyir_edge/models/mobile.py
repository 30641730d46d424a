"""Building blocks of the *mobile* deploy form: the same function as the trained model, written
only with operators that phone delegates (ExecuTorch's XNNPACK, LiteRT, Core ML, NCNN) take
whole, for one image at a time (batch 1) at any H x W.

What the delegates refuse, measured with ExecuTorch 1.5's XNNPACK partitioner (which says why
for every node it leaves on the slow portable kernels), and what replaces it here:

* ``native_layer_norm`` (no delegate op), and channel means: :class:`ChannelNorm` computes
  the mean and variance across channels with 1x1 convolutions of weight 1/C and leaves the
  affine part to the next convolution (:func:`fold_affine_into_conv`);
* pixel (un)shuffle, a reshape with two symbolic sizes (XNNPACK reshapes take at most one
  unknown size): ``conv3x3 + PixelUnshuffle(2)`` is one 4x4 convolution of stride 2 and
  ``PixelShuffle(2)`` a 2x2 transposed convolution of stride 2 with 0 / 1 weights
  (:func:`strided_downsample`, :func:`transposed_upsample`);
* depthwise convolutions larger than 5x5, which XNNPACK runs through a multi-pass kernel
  20-40x slower than its single-pass ones (measured: 7x7 on 16 channels at 224x224 41 ms,
  5x5 3.3 ms): :class:`SplitDepthwise` sums single-pass (k x 3) dilated pieces;
* ``sum`` and ``reciprocal`` in ``F.normalize``, stepped channel slices, ``split`` and
  ``expand``: :class:`ChannelAttentionB1` takes each vector's squared norm from a mean over
  H and W (global average pooling; from the Gram matrix's diagonal where H and W are symbolic)
  and divides by ``rsqrt``.

Every replacement is exact in real arithmetic; the parity certificate of the engine is what
proves it in float.  The one reshape that cannot be delegated is the attention output's way
back from (heads, c, H*W) to (1, C, H, W): it stays a (cheap) copy between two delegate
partitions.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .deploy import DeployGDFN


def fold_affine_into_conv(conv: nn.Conv2d, weight: torch.Tensor | None, bias: torch.Tensor | None,
                          rows: torch.Tensor | None = None) -> nn.Conv2d:
    """A 1x1 convolution equal to ``conv(x * weight + bias)`` (per-channel ``weight`` / ``bias``
    of x, either None), optionally after selecting x's channels ``rows`` (a LongTensor: the
    input channels ``conv`` reads, in its order), so ``conv(select(x) * w + b)`` becomes one
    convolution of the full x."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError("fold_affine_into_conv takes a dense 1x1 convolution")
    w = conv.weight.detach()[:, :, 0, 0]                      # (out, in)
    cin = w.shape[1] if rows is None else None
    n_in = int(weight.numel()) if weight is not None else (int(bias.numel()) if bias is not None else cin)
    with torch.no_grad():
        full = torch.zeros(w.shape[0], n_in, dtype=w.dtype)
        if rows is None:
            full.copy_(w)
        else:
            full[:, rows] = w
        b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        if bias is not None:
            b = b + full @ bias.detach().to(w.dtype)
        if weight is not None:
            full = full * weight.detach().to(w.dtype).view(1, -1)
        out = nn.Conv2d(full.shape[1], full.shape[0], 1, bias=True)
        out.weight.copy_(full[:, :, None, None])
        out.bias.copy_(b)
    return out


def conv_from_matrix(m: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Conv2d:
    """The 1x1 convolution whose (out, in) weight matrix is ``m``."""
    out = nn.Conv2d(m.shape[1], m.shape[0], 1, bias=bias is not None)
    with torch.no_grad():
        out.weight.copy_(m[:, :, None, None])
        if bias is not None:
            out.bias.copy_(bias)
    return out


def compose_1x1(outer: nn.Conv2d, inner: nn.Conv2d) -> nn.Conv2d:
    """The 1x1 convolution ``outer(inner(x))`` of two dense 1x1 convolutions."""
    for c in (outer, inner):
        if c.kernel_size != (1, 1) or c.groups != 1 or c.stride != (1, 1):
            raise ValueError("compose_1x1 takes dense 1x1 convolutions of stride 1")
    wo, wi = outer.weight.detach()[:, :, 0, 0], inner.weight.detach()[:, :, 0, 0]
    b = torch.zeros(wo.shape[0], dtype=wo.dtype) if outer.bias is None else outer.bias.detach().clone()
    if inner.bias is not None:
        b = b + wo @ inner.bias.detach()
    return conv_from_matrix(wo @ wi, b)


class ChannelNorm(nn.Module):
    """LayerNorm across channels *without* its affine part, from 1x1 convolutions:
    ``(x - mean_c x) / sqrt(var_c x + eps)`` (``centred=True``, LayerNorm "WithBias") or
    ``x / sqrt(var_c x + eps)`` (Restormer's "BiasFree").  The affine part goes into the
    convolution that reads the output (:func:`fold_affine_into_conv`)."""

    def __init__(self, channels: int, eps: float, centred: bool):
        super().__init__()
        self.mean = nn.Conv2d(channels, 1, 1, bias=False)
        with torch.no_grad():
            self.mean.weight.fill_(1.0 / channels)
        self.mean.weight.requires_grad_(False)
        self.eps, self.centred = eps, centred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.mean(x)
        r = torch.rsqrt(self.mean(d * d) + self.eps)
        return d * r if self.centred else x * r


def norm_parts(norm: nn.Module, keep: bool = False) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    """A :class:`~anyir_edge.models.layers.LayerNorm2d` (or a ``BodyNorm`` around one) as
    (its :class:`ChannelNorm`, its weight, its bias or None).  ``keep``: (a copy of the LayerNorm
    itself, ones, None), so the convolutions that read it fold nothing (for measuring what the
    ChannelNorm rewrite is worth on a runtime that has a LayerNorm kernel)."""
    ln = getattr(norm, "body", norm)
    if keep:
        return copy.deepcopy(norm), torch.ones(ln.weight.numel()), None
    return ChannelNorm(ln.weight.numel(), ln.eps, ln.bias is not None), ln.weight, ln.bias


def strided_downsample(body: nn.Sequential) -> nn.Conv2d:
    """``Conv2d(C, C/2, 3, padding=1, bias=False)`` then ``PixelUnshuffle(2)`` as one
    ``Conv2d(C, 2C, 4, stride=2, padding=1)``: output channel 4c + 2dy + dx at (i, j) reads the
    3x3 window centred on (2i + dy, 2j + dx), i.e. taps 2i - 1 + dy ... 2i + 1 + dy."""
    conv = body[0]
    cin, half = conv.in_channels, conv.out_channels
    out = nn.Conv2d(cin, 4 * half, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        out.weight.zero_()
        for dy in range(2):
            for dx in range(2):
                out.weight[2 * dy + dx::4, :, dy:dy + 3, dx:dx + 3] = conv.weight
    return out


def pixel_shuffle_deconv(channels: int) -> nn.ConvTranspose2d:
    """``PixelShuffle(2)`` on ``4 * channels`` channels as a transposed convolution of kernel =
    stride = 2 whose weights are 0 / 1: output (c, 2i + dy, 2j + dx) is input channel
    4c + 2dy + dx at (i, j), one product by 1 and three by 0 (exact in float).  No reshape, so
    XNNPACK takes it at any H x W; its kernel = stride transposed convolution is a plain GEMM."""
    out = nn.ConvTranspose2d(4 * channels, channels, 2, stride=2, bias=False)
    with torch.no_grad():
        out.weight.zero_()                                     # (in, out, kH, kW)
        for dy in range(2):
            for dx in range(2):
                out.weight[torch.arange(channels) * 4 + 2 * dy + dx, torch.arange(channels), dy, dx] = 1.0
    return out


def transposed_upsample(body: nn.Sequential) -> nn.Sequential:
    """``Conv2d(C, 2C, 3, padding=1, bias=False)`` then ``PixelShuffle(2)`` as the same
    convolution then :func:`pixel_shuffle_deconv`.  Folding both into one 6x6 transposed
    convolution of stride 2 (same arithmetic) was 2.4-2.7x slower in XNNPACK on x86 than this
    pair (ExecuTorch 1.5, 1 thread: 16.0 vs 7.7 ms for 32 -> 16 channels at 112 -> 224)."""
    conv = body[0]
    return nn.Sequential(copy.deepcopy(conv), pixel_shuffle_deconv(conv.out_channels // 4))


def narrow_output_conv(conv: nn.Conv2d) -> nn.Sequential:
    """A k x k convolution (stride 1, "same" padding) to few channels, such as a restorer's last
    one (C -> 3), as three cheaper ones: a 1x1 convolution to one channel per (tap, output)
    (tap-major), a depthwise k x k convolution whose filters are one-hot at their tap (shifts
    each channel by its offset, zero outside the image as the padding is), and a 1x1 convolution
    summing the taps of each output (with the bias).  ``conv(x)_o(p) = sum_t (W_t x)_o(p + t)``:
    exact in real arithmetic.  XNNPACK's matrix kernels work in tiles of 8-16 output channels, so a
    3-channel convolution leaves most of each tile idle; anyir-tiny's 32 -> 3 output convolution at
    224x224 was its slowest single operator (~4 ms, 1 thread, x86) and runs in about half that this way."""
    o, c, kh, kw = conv.weight.shape
    if conv.stride != (1, 1) or conv.groups != 1 or conv.dilation != (1, 1) or kh % 2 == 0 or kw % 2 == 0 \
            or conv.padding != (kh // 2, kw // 2):
        raise ValueError("narrow_output_conv takes a dense odd-kernel convolution of stride 1 with 'same' padding")
    taps = kh * kw
    first = nn.Conv2d(c, taps * o, 1, bias=False)
    shift = nn.Conv2d(taps * o, taps * o, (kh, kw), padding=(kh // 2, kw // 2), groups=taps * o, bias=False)
    last = nn.Conv2d(taps * o, o, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(conv.weight.detach().permute(2, 3, 0, 1).reshape(taps * o, c, 1, 1))
        shift.weight.zero_()
        last.weight.zero_()
        for t in range(taps):
            shift.weight[t * o:(t + 1) * o, 0, t // kw, t % kw] = 1.0
            last.weight[:, t * o:(t + 1) * o, 0, 0] = torch.eye(o)
        if conv.bias is not None:
            last.bias.copy_(conv.bias.detach())
    return nn.Sequential(first, shift, last)


class Float32Only:
    """Marks a mobile-form module that stays float32 in a float16 program (:data:`FP16_UNSAFE`;
    Core ML: :func:`anyir_edge.export.coreml_export.float32_islands`)."""


class ChannelAttentionB1(Float32Only, nn.Module):
    """Restormer's transposed attention (:func:`anyir_edge.models.layers.channel_attention`) for
    batch 1 in delegate-friendly operators.  q, k, v: (1, C, H, W); ``temperature``: (heads, 1, 1).

    ``F.normalize(x, dim=-1)`` is ``x / max(|x|, 1e-12)`` and ``1 / max(|x|, eps)`` is
    ``rsqrt(max(|x|^2, eps^2))``.  XNNPACK refuses ``sum``; the squared norms |q_i|^2 come from

    * H * W times a 4-D mean of q^2 over H and W (XNNPACK's global average pooling) where H and W
      are numbers when traced (eager, ``--sizes``, LiteRT): one pass over q, where the diagonal of
      q q^T costs a ``bmm`` over H * W; a 32-channel attention block at 224x224 ran 1.45x faster
      in XNNPACK on x86 (10.7 vs 15.4 ms, 1 thread);
    * the diagonal of q q^T (masked by the identity, one ``bmm`` with a vector of ones) where they
      are symbolic (``--max-side``, Core ML's ranges): a product with the symbolic size would be
      computed outside XNNPACK, from a tensor inside it, and split the delegate's partition.
    """

    eps = 1e-12

    def __init__(self, channels: int, heads: int):
        super().__init__()
        c = channels // heads
        self.heads, self.c = heads, c
        self.register_buffer("eye", torch.eye(c).expand(heads, c, c).clone(), persistent=False)
        self.register_buffer("ones_col", torch.ones(heads, c, 1), persistent=False)
        self.register_buffer("ones_row", torch.ones(heads, 1, c), persistent=False)

    def norms_from_means(self, q, k) -> tuple[torch.Tensor, torch.Tensor]:
        """(|q_i|^2 as (heads, c, 1), |k_j|^2 as (heads, 1, c)) from (1, C, H, W) q and k with
        H, W numbers: H * W times the mean of the squares over the image."""
        h, c = self.heads, self.c
        n = float(q.shape[2] * q.shape[3])  # a float constant: an int one would be cast outside the delegate
        return ((q * q).mean(dim=(2, 3), keepdim=True).reshape(h, c, 1) * n,
                (k * k).mean(dim=(2, 3), keepdim=True).reshape(h, 1, c) * n)

    def norms_from_gram(self, qf, kf) -> tuple[torch.Tensor, torch.Tensor]:
        """The same from (heads, c, H * W) qf and kf: the diagonals of qf qf^T and kf kf^T."""
        return (torch.bmm(torch.bmm(qf, qf.transpose(1, 2)) * self.eye, self.ones_col),
                torch.bmm(self.ones_row, torch.bmm(kf, kf.transpose(1, 2)) * self.eye))

    def forward(self, q, k, v, temperature):
        h, c = self.heads, self.c
        qf, kf, vf = q.reshape(h, c, -1), k.reshape(h, c, -1), v.reshape(h, c, -1)
        static = isinstance(q.shape[2] * q.shape[3], int)  # symbolic under torch.export's dynamic shapes
        nq, nk = self.norms_from_means(q, k) if static else self.norms_from_gram(qf, kf)
        logits = torch.bmm(qf, kf.transpose(1, 2))
        floor = self.eps * self.eps
        scale = torch.rsqrt(torch.clamp(nq, min=floor)) * torch.rsqrt(torch.clamp(nk, min=floor))
        attn = (logits * scale * temperature).softmax(dim=-1)
        return torch.bmm(attn, vf).reshape(q.shape)


#: mobile-form modules that stay float32 in a float16 program (those marked :class:`Float32Only`):
#: the channel attention sums over all H*W pixels (its squared norms, q k^T and its product with v), and
#: XNNPACK's FP16 matrix kernels accumulate in FP16 on ARM, where a sum of 50 000 (224x224) or
#: 260 000 (512x512) products loses every term smaller than its running total's FP16 step, and
#: overflows past 65504; MoCE-IR's patch spectral products
#: (:class:`~anyir_edge.models.moce_ir.mobile.PatchSpectralProduct`) multiply two spectra whose
#: values pass 65504 (MoCE-IR-S, random weights, a 256 px photo: up to ~2.7e5).  Means over H*W
#: (GatedDA) are safe: XNNPACK's FP16 reductions accumulate in FP32 (``f16_f32acc_rsum``).
FP16_UNSAFE = (Float32Only,)


class SplitDepthwise(nn.Module):
    """A depthwise k x k convolution (k odd, > 5, stride 1, "same" padding) as the sum of
    k // 2 depthwise (k x 3) convolutions: columns -1, 0, 1 with dilation 1, then columns -d, d
    (dilation d, the middle column zero) for d = 2 .. k // 2.  Each has 3k <= 25 taps for k <= 7,
    which XNNPACK runs in one pass."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        k = conv.kernel_size[0]
        c = conv.out_channels
        if conv.kernel_size != (k, k) or k % 2 == 0 or conv.groups != c or conv.in_channels != c or conv.stride != (1, 1):
            raise ValueError("SplitDepthwise takes an odd square depthwise convolution of stride 1")
        r = k // 2
        self.parts = nn.ModuleList()
        w = conv.weight.detach()                                  # (c, 1, k, k)
        for d in range(1, r + 1):
            part = nn.Conv2d(c, c, (k, 3), padding=(r, d), dilation=(1, d), groups=c,
                             bias=d == 1 and conv.bias is not None)
            with torch.no_grad():
                part.weight.zero_()
                part.weight[:, :, :, 0] = w[:, :, :, r - d]
                part.weight[:, :, :, 2] = w[:, :, :, r + d]
                if d == 1:
                    part.weight[:, :, :, 1] = w[:, :, :, r]
                    if conv.bias is not None:
                        part.bias.copy_(conv.bias)
            self.parts.append(part)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.parts[0](x)
        for p in self.parts[1:]:
            out = out + p(x)
        return out


def fast_depthwise(conv: nn.Conv2d, split: bool = True) -> nn.Module:
    """``conv`` itself, or :class:`SplitDepthwise` where it is a depthwise kernel over 5x5
    (and ``split``)."""
    big = split and conv.kernel_size[0] > 5 and conv.groups == conv.in_channels == conv.out_channels
    return SplitDepthwise(conv) if big else conv


def split_rows(conv: nn.Conv2d, sizes) -> list[nn.Conv2d]:
    """A convolution (dense or depthwise, stride 1, "same" padding) as one per block of
    consecutive output channels (``sizes`` may leave trailing channels out): what replaces a
    ``chunk`` / ``split`` of its output."""
    out, start = [], 0
    dw = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    for n in sizes:
        k = conv.kernel_size[0]
        part = nn.Conv2d(n if dw else conv.in_channels, n, k, padding=k // 2, groups=n if dw else 1,
                         bias=conv.bias is not None)
        with torch.no_grad():
            part.weight.copy_(conv.weight[start:start + n])
            if conv.bias is not None:
                part.bias.copy_(conv.bias[start:start + n])
        out.append(part)
        start += n
    return out


def mobile_resample(r: nn.Module) -> nn.Module:
    """A :class:`~anyir_edge.models.layers.Resample` (conv3x3 + pixel (un)shuffle) without a
    reshape: one strided convolution down, the convolution and a 0 / 1 transposed one up."""
    body = r.body
    return strided_downsample(body) if isinstance(body[1], nn.PixelUnshuffle) else transposed_upsample(body)


class MobileFFN(nn.Module):
    """``ffn(norm(x))`` for Restormer's gated FFN in the CPU deploy form
    (:class:`~anyir_edge.models.deploy.DeployGDFN`): the LayerNorm a :class:`ChannelNorm`, its
    affine part folded into both branches' input convolutions."""

    def __init__(self, norm: nn.Module, ffn: nn.Module, keep_layernorm: bool = False):
        super().__init__()
        if not isinstance(ffn, DeployGDFN):
            raise TypeError("the mobile form is built on the CPU deploy form (DeployGDFN)")
        self.norm, w, b = norm_parts(norm, keep_layernorm)
        self.in_a, self.in_b = fold_affine_into_conv(ffn.in_a, w, b), fold_affine_into_conv(ffn.in_b, w, b)
        self.dw_a, self.dw_b, self.project_out = ffn.dw_a, ffn.dw_b, ffn.project_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        return self.project_out(F.gelu(self.dw_a(self.in_a(y))) * self.dw_b(self.in_b(y)))


class MobileMDTA(nn.Module):
    """``attn(norm(x))`` for Restormer's transposed attention (:class:`~anyir_edge.models.layers.MDTA`):
    ``qkv`` + its depthwise conv + ``chunk(3)`` as three convolutions and three depthwise convs
    (the LayerNorm's affine part folded into the first three), :class:`ChannelAttentionB1`.
    ``pre``: a 1x1 convolution between the norm and the attention (MoCE-IR's decoder), composed
    into the same three convolutions."""

    def __init__(self, norm: nn.Module, attn: nn.Module, pre: nn.Conv2d | None = None):
        super().__init__()
        dim = attn.project_out.in_channels
        self.norm, w, b = norm_parts(norm)
        rows = split_rows(attn.qkv, (dim,) * 3)
        if pre is None:
            self.to_q, self.to_k, self.to_v = (fold_affine_into_conv(c, w, b) for c in rows)
        else:
            first = fold_affine_into_conv(pre, w, b)
            self.to_q, self.to_k, self.to_v = (compose_1x1(c, first) for c in rows)
        self.dw_q, self.dw_k, self.dw_v = split_rows(attn.qkv_dwconv, (dim,) * 3)
        self.temperature = attn.temperature
        self.attention = ChannelAttentionB1(dim, attn.heads)
        self.project_out = attn.project_out

    def attend(self, y: torch.Tensor) -> torch.Tensor:
        """The attention of an input already normalised by :attr:`norm`."""
        q, k, v = self.dw_q(self.to_q(y)), self.dw_k(self.to_k(y)), self.dw_v(self.to_v(y))
        return self.project_out(self.attention(q, k, v, self.temperature))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.norm(x))


class MobileTransformerBlock(nn.Module):
    """Restormer's ``TransformerBlock``: ``x + attn(norm1(x))`` then ``x + ffn(norm2(x))`` in the
    mobile form, ``attn`` an MDTA and ``ffn`` a DeployGDFN (:meth:`from_block` takes a block
    with Restormer's names ``norm1``, ``attn``, ``norm2``, ``ffn``)."""

    def __init__(self, norm1: nn.Module, attn: nn.Module, norm2: nn.Module, ffn: nn.Module):
        super().__init__()
        self.attn = MobileMDTA(norm1, attn)
        self.ffn = MobileFFN(norm2, ffn)

    @classmethod
    def from_block(cls, block: nn.Module) -> "MobileTransformerBlock":
        return cls(block.norm1, block.attn, block.norm2, block.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)
