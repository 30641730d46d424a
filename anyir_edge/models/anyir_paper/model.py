"""``anyir-paper``: AnyIR as read from the paper's text, before the authors published code.

Implements "Any Image Restoration via Efficient Spatial-Frequency Degradation Adaptation"
(Ren et al., arXiv 2407.13372) from its text; the paper summary in
``shared/docs/anyir-paper.md`` was the specification.  The authors' released code
(``anyir_edge.models.anyir``) differs in ways no key mapping absorbs; this reading stays as
a named variant because it is the only layout that reproduces the paper's Table 6 cost and
its trained weights remain a useful teacher.

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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import ConfigError, FrequencyPath, NetConfig, RestorationNet
from ..layers import GatedFFN, LayerNorm2d, channel_attention, conv1x1, downsample, dwconv, upsample
from ..spectral import check_fft_mode, frequency_sum


@dataclass(frozen=True)
class AnyIRPaperConfig(NetConfig):
    """Widths and depths of one paper-reading configuration (see ``anyir_edge.models.CONFIGS``)."""

    arch = "anyir-paper"
    LIMITS = {"dim": 1024, "enc_blocks": 64, "dec_blocks": 64, "refine_blocks": 64, "heads": 256, "in_channels": 16}

    dim: int = 32
    enc_blocks: tuple[int, int, int, int] = (2, 3, 3, 4)
    dec_blocks: tuple[int, int, int] = (2, 3, 3)  # decoder levels 1, 2, 3
    refine_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.66
    gate_expansion: float = 2.0
    lambda_init: float = 0.5
    in_channels: int = 3

    def layout(self) -> dict:
        return {"width": self.dim, "encoder": self.enc_blocks, "decoder": self.dec_blocks,
                "refine": self.refine_blocks}

    def validate(self) -> None:
        super().validate()
        if self.dim < 2 or self.dim % 2:
            raise ConfigError(f"dim must be even and >= 2, got {self.dim}")
        for lvl, (width, h) in enumerate(zip((1, 2, 4, 8), self.heads)):
            if h < 1 or (self.dim * width // 2) % h:
                raise ConfigError(f"level {lvl + 1}: attention width {self.dim * width // 2} is not divisible by {h} heads")


class MDTA(nn.Module):
    """Multi-Dconv-head transposed attention (Restormer) with its own output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = conv1x1(dim, dim * 3)
        self.qkv_dw = dwconv(dim * 3)
        self.proj = conv1x1(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        return self.proj(channel_attention(q, k, v, self.heads, self.temperature))


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
        self.expand = conv1x1(dim, hidden)
        self.alpha_dw = dwconv(self.n_alpha)
        self.gate = conv1x1(self.n_beta + self.n_alpha, self.n_gamma)
        self.proj = conv1x1(dim, dim)

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


class SpatialFrequencyFusion(FrequencyPath):
    """Algorithm 2 / Eq. 4: fuse the attention (A) and gate (G) paths, then 1x1 conv + residual."""

    def __init__(self, dim: int, lambda_init: float = 0.5, fft_mode: str = "fft"):
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lambda_init)))
        self.proj = conv1x1(dim, dim)
        self.fft_mode = check_fft_mode(fft_mode)

    def forward(self, a: torch.Tensor, g: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        spatial = torch.cat([a + torch.sigmoid(g), g + torch.sigmoid(a)], dim=1)
        fq = frequency_sum(a, g, self.fft_mode)
        fq = torch.cat([fq, fq], dim=1)
        fused = self.lam * spatial + (1.0 - self.lam) * fq
        return self.proj(fused) + residual


def GDFN(dim: int, expansion: float) -> GatedFFN:
    """Gated depthwise-conv feed-forward network (Restormer); its depthwise conv is keyed ``dw``."""
    return GatedFFN(dim, expansion, bias=False, dw_name="dw")


class DAB(nn.Module):
    """Degradation Adaptation Block (Fig. 2b, Eq. 1-3)."""

    def __init__(self, dim: int, heads: int, cfg: AnyIRPaperConfig, fft_mode: str = "fft"):
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


class AnyIRPaper(RestorationNet):
    """AnyIR as read from the paper (see the module docstring); ``forward`` pads and crops."""

    arch = "anyir-paper"

    def __init__(self, config: AnyIRPaperConfig | None = None, fft_mode: str = "fft", name: str | None = None):
        cfg = config or AnyIRPaperConfig()
        super().__init__(cfg, fft_mode, name)
        c, h = cfg.dim, cfg.heads

        def stage(n: int, width: int, heads: int) -> nn.Sequential:
            return nn.Sequential(*[DAB(width, heads, cfg, fft_mode) for _ in range(n)])

        self.embed = nn.Conv2d(cfg.in_channels, c, 3, padding=1, bias=False)
        self.enc1 = stage(cfg.enc_blocks[0], c, h[0])
        self.down1 = downsample(c)
        self.enc2 = stage(cfg.enc_blocks[1], 2 * c, h[1])
        self.down2 = downsample(2 * c)
        self.enc3 = stage(cfg.enc_blocks[2], 4 * c, h[2])
        self.down3 = downsample(4 * c)
        self.latent = stage(cfg.enc_blocks[3], 8 * c, h[3])
        self.up3 = upsample(8 * c)
        self.reduce3 = conv1x1(8 * c, 4 * c)
        self.dec3 = stage(cfg.dec_blocks[2], 4 * c, h[2])
        self.up2 = upsample(4 * c)
        self.reduce2 = conv1x1(4 * c, 2 * c)
        self.dec2 = stage(cfg.dec_blocks[1], 2 * c, h[1])
        self.up1 = upsample(2 * c)
        self.reduce1 = conv1x1(2 * c, c)
        self.dec1 = stage(cfg.dec_blocks[0], c, h[0])
        self.refine = stage(cfg.refine_blocks, c, h[0])
        self.output = nn.Conv2d(c, cfg.in_channels, 3, padding=1, bias=False)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(self.embed(x))
        e2 = self.enc2(self.down1(e1))
        e3 = self.enc3(self.down2(e2))
        z = self.latent(self.down3(e3))
        d3 = self.dec3(self.reduce3(torch.cat([self.up3(z), e3], dim=1)))
        d2 = self.dec2(self.reduce2(torch.cat([self.up2(d3), e2], dim=1)))
        d1 = self.dec1(self.reduce1(torch.cat([self.up1(d2), e1], dim=1)))
        return self.output(self.refine(d1)) + x
