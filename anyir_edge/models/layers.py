"""Building blocks shared by the architectures (Restormer lineage): channel LayerNorm, transposed
(channel) attention, the gated depthwise feed-forward network, pixel-(un)shuffle resampling.

Attribute names here become state-dict keys; each architecture wraps them so that its keys
match the checkpoints its authors' code writes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv1x1(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=bias)


def dwconv(c: int, k: int = 3, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=bias)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (eps 1e-5, population variance).

    ``bias=True`` is the usual LayerNorm, written as NHWC ``F.layer_norm`` so that ONNX opset
    >= 17 exports one LayerNormalization node.  ``bias=False`` is Restormer's "BiasFree"
    variant, which also skips the mean subtraction: ``x / sqrt(var + eps) * weight``.
    """

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            var = x.var(dim=1, keepdim=True, unbiased=False)
            return x * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1)
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, tuple(self.weight.shape), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      temperature: torch.Tensor) -> torch.Tensor:
    """Restormer's transposed attention: per head, a (c/heads x c/heads) attention map across
    channels from L2-normalised q, k over all pixels.  q, k, v: (B, c, H, W); returns (B, c, H, W)."""
    b, c, h, w = q.shape
    split = (heads, c // heads)
    q = F.normalize(q.flatten(2).unflatten(1, split), dim=-1)  # (B, heads, c/heads, HW)
    k = F.normalize(k.flatten(2).unflatten(1, split), dim=-1)
    v = v.flatten(2).unflatten(1, split)
    attn = ((q @ k.transpose(-2, -1)) * temperature).softmax(dim=-1)
    return (attn @ v).flatten(1, 2).reshape(b, c, h, w)


class GatedFFN(nn.Module):
    """Gated depthwise-conv feed-forward network (Restormer's GDFN):
    1x1 conv to 2h -> depthwise 3x3 -> GELU(first half) * second half -> 1x1 conv to dim.

    ``dw_name`` is the depthwise conv's attribute (and state-dict key) name, which differs
    between code bases (``dw`` in our paper reading, ``dwconv`` in Restormer's descendants).
    """

    def __init__(self, dim: int, expansion: float, bias: bool = False, dw_name: str = "dwconv"):
        super().__init__()
        hidden = int(dim * expansion)
        self.dw_name = dw_name
        self.project_in = conv1x1(dim, hidden * 2, bias)
        setattr(self, dw_name, dwconv(hidden * 2, 3, bias))
        self.project_out = conv1x1(hidden, dim, bias)

    @property
    def depthwise(self) -> nn.Conv2d:
        return getattr(self, self.dw_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.depthwise(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


def downsample(dim: int) -> nn.Sequential:
    """3x3 conv (dim -> dim/2) + pixel-unshuffle(2): half the resolution, twice the channels."""
    return nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


def upsample(dim: int) -> nn.Sequential:
    """3x3 conv (dim -> 2 dim) + pixel-shuffle(2): twice the resolution, half the channels."""
    return nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))


# ------------------------------------------------ Restormer-family wrappers (their key layout)
class BodyNorm(nn.Module):
    """Restormer's ``LayerNorm`` wrapper: the parameters live under ``body`` (``norm1.body.weight``);
    ``kind`` "withbias" or "biasfree"."""

    def __init__(self, dim: int, kind: str = "withbias"):
        super().__init__()
        self.body = LayerNorm2d(dim, bias=kind == "withbias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Resample(nn.Module):
    """Restormer's ``Downsample`` / ``Upsample``: the layers live under ``body``."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchEmbed(nn.Module):
    """Restormer's ``OverlapPatchEmbed``: a bias-free 3x3 conv under ``proj``."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class MDTA(nn.Module):
    """Restormer's transposed self-attention (their ``Attention``; keys ``temperature``, ``qkv``,
    ``qkv_dwconv``, ``project_out``)."""

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = conv1x1(dim, dim * 3, bias)
        self.qkv_dwconv = dwconv(dim * 3, 3, bias)
        self.project_out = conv1x1(dim, dim, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return self.project_out(channel_attention(q, k, v, self.heads, self.temperature))
