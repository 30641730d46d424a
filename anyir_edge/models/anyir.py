"""AnyIR: the PyTorch reference model.

Implements "Any Image Restoration via Efficient Spatial-Frequency Degradation Adaptation"
(Ren et al., arXiv 2407.13372) from its text (no official code exists); the paper summary
in ``shared/docs/anyir-paper.md`` is the specification.  One model definition serves every
target: the export paths only switch the frequency path (``fft_mode``), never the model.

Macro architecture (Fig. 2a)::

    x -> 3x3 conv (3 -> C) -> enc1 (N1 DAB, C) -> down -> enc2 (N2, 2C) -> down
      -> enc3 (N3, 4C) -> down -> latent (N4, 8C)
      -> up -> concat enc3 -> 1x1 (8C -> 4C) -> dec3 (D3, 4C)
      -> up -> concat enc2 -> 1x1 (4C -> 2C) -> dec2 (D2, 2C)
      -> up -> concat enc1 -> 1x1 (2C -> C)  -> dec1 (D1, C)
      -> refinement (R DAB, C) -> 3x3 conv (C -> 3) -> + x

Down is a 3x3 conv (n -> n/2) + pixel-unshuffle(2); up is a 3x3 conv (n -> 2n) +
pixel-shuffle(2) (Restormer / PromptIR).  The level-1 decoder merge reduces 2C -> C with a
1x1 conv as MoCE-IR does; the paper's Table 6 cost (6.29M parameters, 19 GMACs at 224x224)
is only reached that way (keeping 2C at level 1, Restormer style, gives 10.9M / 46 GMACs).
All convolutions are bias-free; LayerNorms have weight and bias.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .spectral import check_fft_mode, frequency_sum


@dataclass(frozen=True)
class AnyIRConfig:
    """Widths and depths of one AnyIR configuration (see ``anyir_edge.models.CONFIGS``)."""

    dim: int = 32
    enc_blocks: tuple[int, int, int, int] = (2, 3, 3, 4)
    dec_blocks: tuple[int, int, int] = (2, 3, 3)  # decoder levels 1, 2, 3
    refine_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.66
    gate_expansion: float = 2.0
    lambda_init: float = 0.5
    in_channels: int = 3

    @property
    def size_multiple(self) -> int:
        """H and W of the padded input must be multiples of this (3 pixel-unshuffles)."""
        return 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AnyIRConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=False)


def _dwconv3x3(c: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor.

    Written as NHWC ``F.layer_norm`` so that ONNX opset >= 17 exports a single
    LayerNormalization node (which TensorRT maps to its normalization layer).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, tuple(self.weight.shape), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class MDTA(nn.Module):
    """Multi-Dconv-head transposed attention (Restormer): attention across channels."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = _conv1x1(dim, dim * 3)
        self.qkv_dw = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.proj = _conv1x1(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        split = (self.heads, c // self.heads)
        q = q.flatten(2).unflatten(1, split)  # (B, heads, c/heads, HW)
        k = k.flatten(2).unflatten(1, split)
        v = v.flatten(2).unflatten(1, split)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        attn = attn.softmax(dim=-1)
        out = (attn @ v).flatten(1, 2).reshape_as(x)
        return self.proj(out)


class GatedDA(nn.Module):
    """Gated degradation adaptation (Algorithm 1) on C' = C/2 channels.

    Readings chosen where the paper is ambiguous (each is the one that type-checks):

    * Step 2: sigma is the population standard deviation (no Bessel correction, which is
      NaN on the 1x1 maps of the deepest level), computed as sqrt(var + 1e-6) so that its
      gradient stays finite on constant maps.
    * Step 3: mu + sigma is a per-channel (C') statistic but alpha has hidden/4 channels, so
      the statistic is averaged over channels: delta = sigmoid(mean_c(mu_c + sigma_c)) is one
      degradation descriptor per image, and tau is a learnable per-alpha-channel temperature
      (initialised to 1), tau_adj = tau * delta.
    * Step 5: gamma, beta, alpha = hidden/2, hidden/4, hidden/4 channels (the ablation's best).
    * Steps 7-9: W_gate maps concat(beta, alpha') (hidden/2 channels) to hidden/2 channels,
      gated = GELU(gamma) * W_gate(...), and out = W_proj(gated + X) with W_proj a 1x1 conv
      C' -> C'.  The residual ``gated + X`` type-checks only when hidden/2 == C', i.e. the
      expansion r = 2, which is therefore required.
    """

    def __init__(self, dim: int, expansion: float = 2.0):
        super().__init__()
        hidden = int(round(dim * expansion))
        if hidden != 2 * dim:
            raise ValueError(
                f"GatedDA expansion must be 2 (hidden = 2*C' so that gated + X type-checks); got {expansion}"
            )
        self.n_gamma = hidden // 2
        self.n_beta = hidden // 4
        self.n_alpha = hidden - self.n_gamma - self.n_beta
        self.norm = LayerNorm2d(dim)
        self.tau = nn.Parameter(torch.ones(1, self.n_alpha, 1, 1))
        self.expand = _conv1x1(dim, hidden)
        self.alpha_dw = _dwconv3x3(self.n_alpha)
        self.gate = _conv1x1(self.n_beta + self.n_alpha, self.n_gamma)
        self.proj = _conv1x1(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.norm(x)
        mu = xn.mean(dim=(2, 3), keepdim=True)
        sigma = torch.sqrt((xn - mu).pow(2).mean(dim=(2, 3), keepdim=True) + 1e-6)
        delta = torch.sigmoid((mu + sigma).mean(dim=1, keepdim=True))
        tau_adj = self.tau * delta
        gamma, beta, alpha = self.expand(xn).split([self.n_gamma, self.n_beta, self.n_alpha], dim=1)
        alpha = self.alpha_dw(alpha) * (1.0 + tau_adj)
        gated = F.gelu(gamma) * self.gate(torch.cat([beta, alpha], dim=1))
        return self.proj(gated + x)


class SpatialFrequencyFusion(nn.Module):
    """Algorithm 2 / Eq. 4: fuse the attention (A) and gate (G) paths, then 1x1 conv + residual."""

    def __init__(self, dim: int, lambda_init: float = 0.5, fft_mode: str = "fft"):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lambda_init)))
        self.proj = _conv1x1(dim, dim)
        self.fft_mode = check_fft_mode(fft_mode)

    def forward(self, a: torch.Tensor, g: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        spatial = torch.cat([a + torch.sigmoid(g), g + torch.sigmoid(a)], dim=1)
        fq = frequency_sum(a, g, self.fft_mode)
        fq = torch.cat([fq, fq], dim=1)
        fused = self.lam * spatial + (1.0 - self.lam) * fq
        return self.proj(fused) + residual


class GDFN(nn.Module):
    """Gated depthwise-conv feed-forward network (Restormer)."""

    def __init__(self, dim: int, expansion: float):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = _conv1x1(dim, hidden * 2)
        self.dw = _dwconv3x3(hidden * 2)
        self.project_out = _conv1x1(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dw(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class DAB(nn.Module):
    """Degradation Adaptation Block (Fig. 2b, Eq. 1-3)."""

    def __init__(self, dim: int, heads: int, cfg: AnyIRConfig, fft_mode: str = "fft"):
        super().__init__()
        if dim % 2:
            raise ValueError(f"DAB width must be even for the skip-split, got {dim}")
        half = dim // 2
        self.attn_norm = LayerNorm2d(half)
        self.attn = MDTA(half, heads)
        self.gate = GatedDA(half, cfg.gate_expansion)
        self.fusion = SpatialFrequencyFusion(dim, cfg.lambda_init, fft_mode)
        self.ffn_norm = LayerNorm2d(dim)
        self.ffn = GDFN(dim, cfg.ffn_expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # interleaved skip-split: even channels -> attention, odd channels -> GatedDA
        a = self.attn(self.attn_norm(x[:, 0::2]))
        g = self.gate(x[:, 1::2])
        x = self.fusion(a, g, x)
        return x + self.ffn(self.ffn_norm(x))


class Downsample(nn.Sequential):
    def __init__(self, dim: int):
        super().__init__(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))


class Upsample(nn.Sequential):
    def __init__(self, dim: int):
        super().__init__(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom/right up to ``multiple``.

    Reflect padding, as the model needs; a side shorter than or equal to its pad (for example
    a 1-pixel or 3-pixel side with multiple 8) cannot be reflected, so that side is
    edge-replicated instead.  Runtimes that pad outside the model must follow this rule.
    """
    h, w = x.shape[-2], x.shape[-1]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    return x


class AnyIR(nn.Module):
    """The AnyIR all-in-one restoration network.

    ``forward`` accepts (B, 3, H, W) float images in [0, 1] of any H, W >= 1, pads them to
    the size multiple (see :func:`pad_to_multiple`), runs the network and crops back, so the
    output has the input's shape.  ``forward_padded`` is the network on already padded input
    (what an exported engine runs when the runtime pads).
    """

    def __init__(self, config: AnyIRConfig | None = None, fft_mode: str = "fft", name: str | None = None):
        super().__init__()
        cfg = config or AnyIRConfig()
        self.config = cfg
        self.name = name
        c, h = cfg.dim, cfg.heads

        def stage(n: int, width: int, heads: int) -> nn.Sequential:
            return nn.Sequential(*[DAB(width, heads, cfg, fft_mode) for _ in range(n)])

        self.embed = nn.Conv2d(cfg.in_channels, c, 3, padding=1, bias=False)
        self.enc1 = stage(cfg.enc_blocks[0], c, h[0])
        self.down1 = Downsample(c)
        self.enc2 = stage(cfg.enc_blocks[1], 2 * c, h[1])
        self.down2 = Downsample(2 * c)
        self.enc3 = stage(cfg.enc_blocks[2], 4 * c, h[2])
        self.down3 = Downsample(4 * c)
        self.latent = stage(cfg.enc_blocks[3], 8 * c, h[3])
        self.up3 = Upsample(8 * c)
        self.reduce3 = _conv1x1(8 * c, 4 * c)
        self.dec3 = stage(cfg.dec_blocks[2], 4 * c, h[2])
        self.up2 = Upsample(4 * c)
        self.reduce2 = _conv1x1(4 * c, 2 * c)
        self.dec2 = stage(cfg.dec_blocks[1], 2 * c, h[1])
        self.up1 = Upsample(2 * c)
        self.reduce1 = _conv1x1(2 * c, c)
        self.dec1 = stage(cfg.dec_blocks[0], c, h[0])
        self.refine = stage(cfg.refine_blocks, c, h[0])
        self.output = nn.Conv2d(c, cfg.in_channels, 3, padding=1, bias=False)
        self._fft_mode = check_fft_mode(fft_mode)

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    @property
    def fft_mode(self) -> str:
        return self._fft_mode

    def set_fft_mode(self, mode: str) -> "AnyIR":
        """Switch every fusion's frequency path to ``mode`` ("fft", "fold" or "matmul")."""
        self._fft_mode = check_fft_mode(mode)
        for m in self.modules():
            if isinstance(m, SpatialFrequencyFusion):
                m.fft_mode = mode
        return self

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(self.embed(x))
        e2 = self.enc2(self.down1(e1))
        e3 = self.enc3(self.down2(e2))
        z = self.latent(self.down3(e3))
        d3 = self.dec3(self.reduce3(torch.cat([self.up3(z), e3], dim=1)))
        d2 = self.dec2(self.reduce2(torch.cat([self.up2(d3), e2], dim=1)))
        d1 = self.dec1(self.reduce1(torch.cat([self.up1(d2), e1], dim=1)))
        return self.output(self.refine(d1)) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected a (B, {self.config.in_channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2], x.shape[-1]
        if h < 1 or w < 1:
            raise ValueError(f"image must be at least 1x1, got {h}x{w}")
        out = self.forward_padded(pad_to_multiple(x, self.size_multiple))
        return out[..., :h, :w]
