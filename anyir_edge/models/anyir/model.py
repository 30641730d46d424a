"""``anyir``: the AnyIR layout of the authors' released code (Amazingren/AnyIR, ``net/anyir.py``).

Written from a reading of their file (it has no licence: nothing is copied); the state-dict
keys and tensor shapes are theirs, so a checkpoint written by their ``train.py`` loads as is,
and golden fixtures made by running their file (``tests/fixtures/``) prove the forward equal.

Macro layout (Restormer U-Net, C = ``dim``)::

    x -> 3x3 conv (3 -> C) -> encoder_level1 (N1 blocks, C) -> down -> encoder_level2 (N2, 2C)
      -> down -> encoder_level3 (N3, 4C) -> down -> latent (N4, 8C) -> 1x1 (8C -> 4C)
      -> up (4C -> 2C) -> concat enc3 (6C) -> 1x1 (6C -> 4C) -> decoder_level3 (D3, 4C)
      -> up (4C -> 2C) -> concat enc2 (4C) -> 1x1 (4C -> 2C) -> decoder_level2 (D2, 2C)
      -> up (2C -> C)  -> concat enc1 (2C)                   -> decoder_level1 (D1, 2C)
      -> refinement (R, 2C) -> 3x3 conv (2C -> 3) -> + x

Decoder depths are the encoder's in their code (D = N); ``dec_blocks`` lets a configuration
differ.  A block (``TransformerBlock``) is ``x + attn(LN(x))`` then ``x + ffn(LN(x))`` with
one LayerNorm over all C channels.  Its ``attn`` is the degradation-adaptation block:

* the normalised input is split by channel parity: even channels go to transposed attention
  (qkv 1x1 + 3x3 depthwise, no projection of its own), odd channels to GatedDA;
* GatedDA (``gatedcnn``) on C' = C/2: BatchNorm2d (running statistics in eval); per-channel
  spatial mean mu and std sigma (population, sqrt(var + 1e-6)); delta = sigmoid(mu + sigma);
  tau_adj = tau * delta (tau has C' entries); a 1x1 expansion to round(8/3 C') channels split
  into gamma (C'), beta (C'), alpha (the rest); alpha' = dw7x7(alpha) * (1 + tau_adj) with
  tau_adj tiled over alpha's channels and cut to their number; out = W_proj(sigmoid(gamma) *
  W_gate(cat(beta, alpha')) + x);
* fusion of the attention output A and the gate output G: spatial = cat(A + sigmoid(G),
  G + sigmoid(A)); frequency = irfft2(rfft2(A) + rfft2(G), s=(H, W)) with every channel
  repeated twice in place (f0, f0, f1, f1, ...); lam * spatial + (1 - lam) * frequency; then
  one 1x1 ``project_out`` (C -> C).  The frequency term is linear, so ``fft_mode="fold"``
  (A + G) is exact.

The FFN is Restormer's gated depthwise FFN (expansion 2 in their configurations).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..base import ConfigError, FrequencyPath, RestorationNet, UNetConfig
from ..layers import (
    BodyNorm,
    GatedFFN,
    PatchEmbed,
    Resample,
    channel_attention,
    conv1x1,
    downsample,
    dwconv,
    upsample,
)
from ..spectral import check_fft_mode, frequency_sum


@dataclass(frozen=True)
class AnyIRConfig(UNetConfig):
    """One configuration of the authors' layout (field names follow their constructor's meaning)."""

    arch = "anyir"
    LIMITS = {"dim": 1024, "blocks": 64, "dec_blocks": 64, "refine_blocks": 64, "heads": 256, "in_channels": 16,
              "gate_kernel": 31}

    dim: int = 28
    blocks: tuple[int, int, int, int] = (3, 5, 5, 7)   # encoder levels 1-3 and the latent level
    dec_blocks: tuple[int, int, int] | None = None     # decoder levels 1, 2, 3; None: blocks[:3] (theirs)
    refine_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.0
    gate_expansion: float = 8 / 3
    gate_kernel: int = 7
    bias: bool = False              # biases of the attention, FFN, channel-reduction and output convs
    layernorm: str = "withbias"     # "withbias" or "biasfree" (Restormer's LayerNorm_type)
    in_channels: int = 3

    def validate(self) -> None:
        super().validate()
        if self.gate_kernel % 2 == 0:
            raise ConfigError(f"gate_kernel must be odd, got {self.gate_kernel}")
        if not 2.0 < self.gate_expansion <= 16.0:
            raise ConfigError(f"gate_expansion must be in (2, 16], got {self.gate_expansion}")
        if not 0.0 < self.ffn_expansion <= 16.0:
            raise ConfigError(f"ffn_expansion must be in (0, 16], got {self.ffn_expansion}")
        widths = {0: (1, 2), 1: (2,), 2: (4,), 3: (8,)}  # level 1's heads also serve decoder 1 / refinement (2C)
        for lvl, h in enumerate(self.heads):
            for w in widths[lvl]:
                if h < 1 or (self.dim * w // 2) % h:
                    raise ConfigError(f"attention width {self.dim * w // 2} (level {lvl + 1}) is not divisible "
                                      f"by {h} heads")
            for w in widths[lvl]:
                half = self.dim * w // 2
                if int(round(self.gate_expansion * half)) - 2 * half < 1:
                    raise ConfigError(f"gate_expansion {self.gate_expansion:g} leaves GatedDA no alpha channels "
                                      f"at width {half}")


class GatedDA(nn.Module):
    """Gated degradation adaptation on C' channels (keys: ``norm``, ``W_exp``, ``W_depth``,
    ``W_gate``, ``W_proj``, ``tau``); see the module docstring."""

    eps = 1e-6

    def __init__(self, dim: int, expansion: float = 8 / 3, kernel: int = 7):
        super().__init__()
        hidden = int(round(expansion * dim))
        self.splits = (dim, dim, hidden - 2 * dim)  # gamma, beta, alpha
        n_alpha = self.splits[2]
        self.norm = nn.BatchNorm2d(dim)
        self.W_exp = conv1x1(dim, hidden)
        self.W_depth = dwconv(n_alpha, kernel)
        self.W_gate = conv1x1(dim + n_alpha, dim)
        self.W_proj = conv1x1(dim, dim)
        self.tau = nn.Parameter(torch.ones(1, dim, 1, 1))

    def tau_for_alpha(self, tau_adj: torch.Tensor) -> torch.Tensor:
        """(B, C', 1, 1) -> (B, n_alpha, 1, 1): tiled over alpha's channels, cut to their number."""
        c, n = self.splits[0], self.splits[2]  # Python ints: a traced graph keeps no shape arithmetic
        if n <= c:
            return tau_adj[:, :n]
        return torch.cat([tau_adj] * -(-n // c), dim=1)[:, :n]

    def adapt(self, x: torch.Tensor, f: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Steps 3-9 from the input ``x``, the normalised input's expansion ``f`` and its
        per-channel spatial mean ``mu`` and variance ``var`` (shared with the deploy form)."""
        tau_adj = self.tau * torch.sigmoid(mu + torch.sqrt(var + self.eps))
        gamma, beta, alpha = f.split(self.splits, dim=1)
        alpha = self.W_depth(alpha) * (1.0 + self.tau_for_alpha(tau_adj))
        gated = torch.sigmoid(gamma) * self.W_gate(torch.cat([beta, alpha], dim=1))
        return self.W_proj(gated + x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.norm(x)
        mu = xn.mean(dim=(2, 3), keepdim=True)
        var = (xn - mu).pow(2).mean(dim=(2, 3), keepdim=True)
        return self.adapt(x, self.W_exp(xn), mu, var)


def repeat_channels_twice(x: torch.Tensor) -> torch.Tensor:
    """``x.repeat_interleave(2, dim=1)`` (f0, f0, f1, f1, ...) as stack + reshape, which every
    exporter and runtime takes."""
    b, c, h, w = x.shape
    return torch.stack([x, x], dim=2).reshape(b, 2 * c, h, w)


class DegradationAttention(FrequencyPath):
    """The block's ``attn``: attention (even channels) and GatedDA (odd channels), fused in
    space and frequency, then ``project_out``."""

    def __init__(self, dim: int, heads: int, cfg: AnyIRConfig, fft_mode: str = "fft"):
        super().__init__()
        half = dim // 2
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = conv1x1(half, half * 3, cfg.bias)
        self.qkv_dwconv = dwconv(half * 3, 3, cfg.bias)
        self.gatedcnn = GatedDA(half, cfg.gate_expansion, cfg.gate_kernel)
        self.lam = nn.Parameter(torch.tensor(0.5))
        self.project_out = conv1x1(dim, dim, cfg.bias)
        self.fft_mode = check_fft_mode(fft_mode)

    def fuse(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        spatial = torch.cat([a + torch.sigmoid(g), g + torch.sigmoid(a)], dim=1)
        freq = repeat_channels_twice(frequency_sum(a, g, self.fft_mode))
        return self.project_out(self.lam * spatial + (1.0 - self.lam) * freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dwconv(self.qkv(x[:, 0::2])).chunk(3, dim=1)
        a = channel_attention(q, k, v, self.heads, self.temperature)
        return self.fuse(a, self.gatedcnn(x[:, 1::2]))


class Block(nn.Module):
    """``x + attn(norm1(x))`` then ``x + ffn(norm2(x))`` (keys as their ``TransformerBlock``)."""

    def __init__(self, dim: int, heads: int, cfg: AnyIRConfig, fft_mode: str = "fft"):
        super().__init__()
        self.norm1 = BodyNorm(dim, cfg.layernorm)
        self.attn = DegradationAttention(dim, heads, cfg, fft_mode)
        self.norm2 = BodyNorm(dim, cfg.layernorm)
        self.ffn = GatedFFN(dim, cfg.ffn_expansion, cfg.bias, dw_name="dwconv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class AnyIR(RestorationNet):
    """The authors' AnyIR (see the module docstring); ``forward`` pads to a multiple of 8 and crops."""

    arch = "anyir"

    def __init__(self, config: AnyIRConfig | None = None, fft_mode: str = "fft", name: str | None = None):
        cfg = config or AnyIRConfig()
        super().__init__(cfg, fft_mode, name)
        c, h, n, d = cfg.dim, cfg.heads, cfg.blocks, cfg.decoder_blocks

        def stage(count: int, width: int, heads: int) -> nn.Sequential:
            return nn.Sequential(*[Block(width, heads, cfg, fft_mode) for _ in range(count)])

        self.patch_embed = PatchEmbed(cfg.in_channels, c)
        self.encoder_level1 = stage(n[0], c, h[0])
        self.down1_2 = Resample(downsample(c))
        self.encoder_level2 = stage(n[1], 2 * c, h[1])
        self.down2_3 = Resample(downsample(2 * c))
        self.encoder_level3 = stage(n[2], 4 * c, h[2])
        self.down3_4 = Resample(downsample(4 * c))
        self.latent = stage(n[3], 8 * c, h[3])
        self.reduce_dim_level3 = conv1x1(8 * c, 4 * c, cfg.bias)
        self.up4_3 = Resample(upsample(4 * c))
        self.reduce_chan_level3 = conv1x1(6 * c, 4 * c, cfg.bias)
        self.decoder_level3 = stage(d[2], 4 * c, h[2])
        self.up3_2 = Resample(upsample(4 * c))
        self.reduce_chan_level2 = conv1x1(4 * c, 2 * c, cfg.bias)
        self.decoder_level2 = stage(d[1], 2 * c, h[1])
        self.up2_1 = Resample(upsample(2 * c))
        self.decoder_level1 = stage(d[0], 2 * c, h[0])
        self.refinement = stage(cfg.refine_blocks, 2 * c, h[0])
        self.output = nn.Conv2d(2 * c, cfg.in_channels, 3, padding=1, bias=cfg.bias)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        z = self.reduce_dim_level3(self.latent(self.down3_4(e3)))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(z), e3], dim=1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], dim=1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], dim=1))
        return self.output(self.refinement(d1)) + x
