"""``promptir``: PromptIR (Potlapalli et al., NeurIPS 2023), the layout of the authors' code
(va1shn9v/PromptIR ``net/model.py``, ``PromptIR(decoder=True)``, read at HEAD 106159a; the file
last changed in 20eff77).

Written from a reading of their file (their licence is academic, non-commercial: nothing is
copied); the state-dict keys and tensor shapes are theirs, so a checkpoint written by their
``train.py`` (a Lightning module holding the network as ``net``) loads as is, and golden
fixtures made by running their file (``tests/fixtures/promptir-authors-*``) prove the forward
equal.

Macro layout (Restormer U-Net with prompts in the decoder, C = ``dim``; P1, P2, P3 the
prompt widths, 64 / 128 / 320 in their code)::

    x -> 3x3 conv (3 -> C) -> encoder_level1 (N1 blocks, C) -> down -> encoder_level2 (N2, 2C)
      -> down -> encoder_level3 (N3, 4C) -> down -> latent (N4, 8C)
      -> cat prompt3 (8C + P3) -> noise_level3 (1 block) -> reduce_noise_level3 (1x1 -> 4C)
      -> up (4C -> 2C) -> cat enc3 (6C) -> reduce_chan_level3 (1x1 -> 4C) -> decoder_level3 (D3, 4C)
      -> cat prompt2 (4C + P2) -> noise_level2 (1 block) -> reduce_noise_level2 (1x1 -> 4C)
      -> up (4C -> 2C) -> cat enc2 (4C) -> reduce_chan_level2 (1x1 -> 2C) -> decoder_level2 (D2, 2C)
      -> cat prompt1 (2C + P1) -> noise_level1 (1 block) -> reduce_noise_level1 (1x1 -> 2C)
      -> up (2C -> C) -> cat enc1 (2C) -> decoder_level1 (D1, 2C)
      -> refinement (R, 2C) -> 3x3 conv (2C -> 3) -> + x

A block is Restormer's ``TransformerBlock``: ``x + attn(LN(x))`` then ``x + ffn(LN(x))``,
``attn`` the transposed (channel) attention MDTA (qkv 1x1 + 3x3 depthwise, per-head
``temperature``, ``project_out``), ``ffn`` the gated depthwise FFN (GDFN, expansion 2.66).
Decoder depths repeat the encoder's (levels 1-3) in their code; the three ``noise_level``
blocks all use level 3's head count (``heads[2]``; ``noise_heads`` here).

A prompt block (their ``PromptGenBlock``) on a feature map F (B, W, H', W'): ``prompt_param``
holds L learnt prompts of P channels and S x S pixels; weights = softmax(Linear(mean of F over
space)) (B, L); prompt = sum over L of weight x prompt (B, P, S, S); bilinearly resized to
H' x W' (``align_corners=False``, no antialiasing) and a bias-free 3x3 conv (P -> P).

Their constructor also builds six 1x1 convs the forward never calls (``chnl_reduce1-3``:
P_i -> 64 / 128 / 256, ``reduce_noise_channel_1-3``: level width + that -> level width).
They are in their checkpoints and their parameter count, so they are here too
(``unused_widths``; zeros leave them out).  Their ``decoder=False`` network cannot run (its
``up4_3`` takes 4C channels, the latent has 8C), so only ``decoder=True`` is described.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import ConfigError, RestorationNet, UNetConfig
from ..layers import (
    MDTA,
    BodyNorm,
    GatedFFN,
    PatchEmbed,
    Resample,
    conv1x1,
    downsample,
    upsample,
)

#: most elements one prompt block's ``prompt_param`` may hold (their largest: 5 x 64 x 64 x 64)
MAX_PROMPT_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class PromptIRConfig(UNetConfig):
    """One configuration of the authors' layout.  Defaults are their ``PromptIR(decoder=True)``;
    the prompt and unused-conv widths, fixed numbers in their code, are fields here."""

    arch = "promptir"
    LIMITS = {"dim": 1024, "blocks": 64, "dec_blocks": 64, "refine_blocks": 64, "heads": 256, "noise_heads": 256,
              "prompt_dims": 4096, "prompt_lens": 256, "prompt_sizes": 1024, "unused_widths": 4096, "in_channels": 16}

    dim: int = 48
    blocks: tuple[int, int, int, int] = (4, 6, 6, 8)   # encoder levels 1-3 and the latent level
    dec_blocks: tuple[int, int, int] | None = None     # decoder levels 1, 2, 3; None: blocks[:3] (theirs)
    refine_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    noise_heads: tuple[int, int, int] = (4, 4, 4)      # noise_level1, 2, 3 (heads[2] in their code)
    ffn_expansion: float = 2.66
    bias: bool = False              # biases of the attention, FFN, 1x1 and output convs
    layernorm: str = "withbias"     # "withbias" or "biasfree" (Restormer's LayerNorm_type)
    prompt_dims: tuple[int, int, int] = (64, 128, 320)   # P of prompt1, 2, 3
    prompt_lens: tuple[int, int, int] = (5, 5, 5)        # L: prompts per block
    prompt_sizes: tuple[int, int, int] = (64, 32, 16)    # S: each prompt is S x S pixels
    unused_widths: tuple[int, int, int] = (64, 128, 256)  # outputs of chnl_reduce1-3; (0, 0, 0): none
    in_channels: int = 3

    @property
    def prompt_widths(self) -> tuple[int, int, int]:
        """Widths of the features prompt1, 2, 3 read: decoder levels 2 and 3 and the latent (2C, 4C, 8C)."""
        return (2 * self.dim, 4 * self.dim, 8 * self.dim)

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.ffn_expansion <= 16.0:
            raise ConfigError(f"ffn_expansion must be in (0, 16], got {self.ffn_expansion}")
        for name in ("prompt_dims", "prompt_lens", "prompt_sizes"):
            if min(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be positive, got {list(getattr(self, name))}")
        for p, n, s in zip(self.prompt_dims, self.prompt_lens, self.prompt_sizes):
            if p * n * s * s > MAX_PROMPT_ELEMENTS:
                raise ConfigError(f"a prompt of {n} x {p} x {s} x {s} is too large")
        if any(self.unused_widths) and not all(self.unused_widths):
            raise ConfigError(f"unused_widths must be all positive or all 0, got {list(self.unused_widths)}")
        c = self.dim
        noise = [w + p for w, p in zip(self.prompt_widths, self.prompt_dims)]
        checks = [(c, self.heads[0]), (2 * c, self.heads[0]), (2 * c, self.heads[1]), (4 * c, self.heads[2]),
                  (8 * c, self.heads[3])] + list(zip(noise, self.noise_heads))
        for width, h in checks:
            if h < 1 or width % h:
                raise ConfigError(f"width {width} is not divisible by {h} attention heads")
            if int(width * self.ffn_expansion) < 1:
                raise ConfigError(f"ffn_expansion {self.ffn_expansion:g} leaves width {width} no hidden channels")


class Block(nn.Module):
    """``x + attn(norm1(x))`` then ``x + ffn(norm2(x))`` (keys as their ``TransformerBlock``)."""

    def __init__(self, dim: int, heads: int, cfg: PromptIRConfig):
        super().__init__()
        self.norm1 = BodyNorm(dim, cfg.layernorm)
        self.attn = MDTA(dim, heads, cfg.bias)
        self.norm2 = BodyNorm(dim, cfg.layernorm)
        self.ffn = GatedFFN(dim, cfg.ffn_expansion, cfg.bias, dw_name="dwconv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PromptGen(nn.Module):
    """Their ``PromptGenBlock`` (keys ``prompt_param``, ``linear_layer``, ``conv3x3``): a
    softmax-weighted sum of L learnt prompts, resized to the input's size, then a 3x3 conv."""

    def __init__(self, width: int, prompt_dim: int, length: int, size: int):
        super().__init__()
        self.prompt_param = nn.Parameter(torch.rand(1, length, prompt_dim, size, size))
        self.linear_layer = nn.Linear(width, length)
        self.conv3x3 = nn.Conv2d(prompt_dim, prompt_dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)  # (B, L)
        prompt = (weights[:, :, None, None, None] * self.prompt_param).sum(dim=1)  # (B, P, S, S)
        # the size comes from the traced shape, so an exported graph resizes to any H', W'
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


class PromptIR(RestorationNet):
    """The authors' PromptIR (see the module docstring); ``forward`` pads to a multiple of 8 and
    crops.  No frequency path: every ``fft_mode`` is the same network."""

    arch = "promptir"

    def __init__(self, config: PromptIRConfig | None = None, fft_mode: str = "fft", name: str | None = None):
        cfg = config or PromptIRConfig()
        super().__init__(cfg, fft_mode, name)
        c, h, n, d, b = cfg.dim, cfg.heads, cfg.blocks, cfg.decoder_blocks, cfg.bias
        p, nh = cfg.prompt_dims, cfg.noise_heads

        def stage(count: int, width: int, heads: int) -> nn.Sequential:
            return nn.Sequential(*[Block(width, heads, cfg) for _ in range(count)])

        self.patch_embed = PatchEmbed(cfg.in_channels, c)
        self.prompt1, self.prompt2, self.prompt3 = (
            PromptGen(w, pd, ln, sz) for w, pd, ln, sz in zip(cfg.prompt_widths, p, cfg.prompt_lens, cfg.prompt_sizes))
        if any(cfg.unused_widths):
            # built by their constructor, never called by their forward (see the module docstring)
            u = cfg.unused_widths
            self.chnl_reduce1, self.chnl_reduce2, self.chnl_reduce3 = (
                conv1x1(pd, uw, b) for pd, uw in zip(p, u))
            self.reduce_noise_channel_1 = conv1x1(c + u[0], c, b)
            self.reduce_noise_channel_2 = conv1x1(2 * c + u[1], 2 * c, b)
            self.reduce_noise_channel_3 = conv1x1(4 * c + u[2], 4 * c, b)
        self.encoder_level1 = stage(n[0], c, h[0])
        self.down1_2 = Resample(downsample(c))
        self.encoder_level2 = stage(n[1], 2 * c, h[1])
        self.down2_3 = Resample(downsample(2 * c))
        self.encoder_level3 = stage(n[2], 4 * c, h[2])
        self.down3_4 = Resample(downsample(4 * c))
        self.latent = stage(n[3], 8 * c, h[3])
        self.noise_level3 = Block(8 * c + p[2], nh[2], cfg)
        self.reduce_noise_level3 = conv1x1(8 * c + p[2], 4 * c, b)
        self.up4_3 = Resample(upsample(4 * c))
        self.reduce_chan_level3 = conv1x1(6 * c, 4 * c, b)
        self.decoder_level3 = stage(d[2], 4 * c, h[2])
        self.noise_level2 = Block(4 * c + p[1], nh[1], cfg)
        self.reduce_noise_level2 = conv1x1(4 * c + p[1], 4 * c, b)
        self.up3_2 = Resample(upsample(4 * c))
        self.reduce_chan_level2 = conv1x1(4 * c, 2 * c, b)
        self.decoder_level2 = stage(d[1], 2 * c, h[1])
        self.noise_level1 = Block(2 * c + p[0], nh[0], cfg)
        self.reduce_noise_level1 = conv1x1(2 * c + p[0], 2 * c, b)
        self.up2_1 = Resample(upsample(2 * c))
        self.decoder_level1 = stage(d[0], 2 * c, h[0])
        self.refinement = stage(cfg.refine_blocks, 2 * c, h[0])
        self.output = nn.Conv2d(2 * c, cfg.in_channels, 3, padding=1, bias=b)

    @staticmethod
    def _prompted(x: torch.Tensor, prompt: nn.Module, block: nn.Module, reduce: nn.Module) -> torch.Tensor:
        return reduce(block(torch.cat([x, prompt(x)], dim=1)))

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        z = self._prompted(self.latent(self.down3_4(e3)), self.prompt3, self.noise_level3, self.reduce_noise_level3)
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(z), e3], dim=1)))
        d3 = self._prompted(d3, self.prompt2, self.noise_level2, self.reduce_noise_level2)
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], dim=1)))
        d2 = self._prompted(d2, self.prompt1, self.noise_level1, self.reduce_noise_level1)
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], dim=1))
        return self.output(self.refinement(d1)) + x
