"""``moce-ir``: MoCE-IR (Zamfir et al., CVPR 2025), the layout of the authors' released code.

Source: github.com/eduardzamfir/MoCE-IR ``src/net/moce_ir.py`` at commit a1a6e74 (read, not
copied); configurations from their ``src/options.py`` as their ``train.py`` / ``test.py`` pass
them.  Licence: this implementation: Apache-2.0; the authors' code and weights: Apache-2.0.
State-dict keys and tensor shapes are theirs, so a checkpoint written by their Lightning
``train.py`` (``net.`` prefix) loads as is; golden fixtures made by running their file
(``tests/fixtures/moce-ir-authors-*``) prove the forward equal.

Macro layout (4 levels, C = ``dim``; widths C, 2C, 4C, 8C)::

    x -> 3x3 conv (3 -> C) -> enc.0 (N1 encoder blocks, C)  -> down -> enc.1 (N2, 2C) -> down
      -> enc.2 (N3, 4C) -> down -> latent (N4, 8C) --> freq_embed -> f (B, 8C)
      -> dec.0: up (8C -> 4C), concat enc.2 (8C), 1x1 (8C -> 4C), D3 decoder blocks (4C, f)
      -> dec.1: up (4C -> 2C), concat enc.1 (4C), 1x1 (4C -> 2C), D2 decoder blocks (2C, f)
      -> dec.2: up (2C -> C),  concat enc.0 (2C), 1x1 (2C -> C),  D1 decoder blocks (C, f)
      -> refinement (R encoder blocks, C) -> 3x3 conv (C -> 3) -> + x

Unlike Restormer the first decoder level is C wide (it is reduced by a 1x1 conv too).
``dec_blocks`` is (D1, D2, D3), their ``num_dec_blocks`` order; their ``dec`` list runs
deepest first.

* Encoder block (encoder, latent, refinement): ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``;
  these always have biases (their code passes ``bias=True``), whatever ``bias`` says.
* ``freq_embed``: fixed-init (but trainable) 3x3 depthwise high-pass [-1.. 8 ..-1] on the
  latent output, GELU, spatial mean, MLP 8C -> 16C -> 8C.  Its output ``f`` steers routing.
* Decoder block: ``n = LN(x)``; ``s = MDTA(proj0(n))`` (the "shared" path);
  ``a = adapter(proj1(n), f, s)``; ``x = CrossAttn(q from a, k/v from s) + x`` (k/v 7x7
  depthwise); then ``x + GDFN(LN(x))``.
* Adapter (mixture of complexity experts): logits = Linear(avgpool(a)) + Linear(f); scores =
  softmax(logits); the top-k scores (k = ``top_k``, 1 in both their configurations) are the gates
  of their experts, every other gate is 0; ``out = proj_out(sum_e gate_e * expert_e(a, s))`` -
  the softmax value does scale the chosen expert's output, as in their code.
* Expert e (of E; patch p_e = 2^(e+2), rank r_e): ``a + W3(FFTAttn(W1 a) * silu(W2 s))`` with
  1x1 convs W1, W2 (width -> r_e) and W3 (r_e -> width).  With ``rank_type="spread"`` (both of
  their configurations; their ``--latent_dim 2`` is then unused) r_e = width / 2^(E-1-e): at
  width 4C and E = 4 the experts have ranks C/2, C, 2C, 4C and patches 4, 8, 16, 32.
* FFTAttn on r channels: q = dw3x3(1x1(y)), (k, v) = dw7x7(1x1(y)); q and k are zero-padded at
  the bottom/right to multiples of p and cut into p x p patches; per patch
  ``irfft2(rfft2(q) * rfft2(k), s=(p, p))`` (the circular convolution of q and k within the
  patch: a product of two spectra, not linear, so ``fft_mode="fold"`` does not exist for this
  network); the patches are put back and cropped, LayerNorm (with bias), ``* v``, 1x1
  ``proj_out``.  ``fft_mode="fft"`` is their torch.fft calls; ``fft_mode="matmul"`` computes
  the same with real DFT matrices (constants: p is fixed per expert).

The adapter's output is used only as the cross attention's queries, which are L2-normalised
over the pixels; with top-1 routing and a decoder without biases (both of their
configurations) the gate value therefore cancels and only the choice of expert matters.

Deviations from their code, all in what eval computes:

* Routing is deterministic.  Their ``RoutingFunction`` adds N(0, 1/E) noise to the logits in
  eval too, so their outputs vary from run to run; this implementation adds none (their code
  with the noise switched off - ``noise_std = 0`` on every router - is what the fixtures
  record and what this computes).
* Every expert is computed and the chosen ones selected by their gates (a one-hot weighted sum
  after ``topk`` + ``scatter``): no data-dependent control flow, so ONNX/TensorRT export works,
  and at batch > 1 each image is routed on its own (their eval path indexes the expert list
  with ``topk(...).squeeze(0)`` and is only right at batch 1).  ``set_routing("sparse")``
  runs, in eager PyTorch only, just the chosen experts per image (their cost); a trace always
  takes the dense form.  The cost of computing every expert (``count_macs`` at 224 x 224,
  FFTs not counted; equal to their code's count with ``topk`` = E, and the eager figures equal
  to their code's with every router forced to one expert):

  ==============  ===========  ==========================================  ==================
  configuration   dense        eager: every router picks expert 0 .. 3     matmul DFTs, dense
  ==============  ===========  ==========================================  ==================
  MoCE-IR-S       39.36 G      32.46 G .. 36.59 G (+21 % .. +8 % dense)    +3.83 G
  MoCE-IR         85.24 G      70.85 G .. 79.56 G (+20 % .. +7 % dense)    +5.75 G
  ==============  ===========  ==========================================  ==================

  The experts are small beside the shared trunk, so the exportable dense form costs at most
  about a fifth more than their batch-1 eager path.
* Training (not their training): no routing noise and no load-balancing loss; the gradient
  reaches the routers through the gate values, as in their dense training path.
* Their ``ModExpert.feat_extract`` loops ``depth`` times over the same input (the result is
  that of one pass); ``stage_depth`` / ``depth_type`` therefore change neither the function nor
  the parameters and are not part of the configuration; one pass is computed (their
  configurations have depth 1, so the MACs agree).  ``complexity_scale`` / ``with_complexity``
  only shape their training loss; the ``routing.complexity`` buffer is kept (their key) with
  the value their "max" scaling gives, and a checkpoint's value replaces it on loading.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..base import ConfigError, FrequencyPath, NetConfig, RestorationNet
from ..layers import (
    MDTA,
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
from ..spectral import check_fft_mode, dft_cos_sin, irfft2_matmul, rfft2_matmul

RANK_TYPES = ("spread", "constant", "lin", "double", "exp", "fact")
ROUTING_MODES = ("dense", "sparse")
MAX_RANK = 4096


@dataclass(frozen=True)
class MoCEIRConfig(NetConfig):
    """One configuration of the authors' MoCE-IR (their constructor's arguments, our names)."""

    arch = "moce-ir"
    LIMITS = {"dim": 1024, "blocks": 64, "dec_blocks": 64, "refine_blocks": 64, "heads": 256, "in_channels": 16,
              "experts": 8, "top_k": 8, "rank": 64}

    dim: int = 32
    blocks: tuple[int, int, int, int] = (4, 6, 6, 8)   # encoder levels 1-3 and the latent level
    dec_blocks: tuple[int, int, int] = (2, 4, 4)        # decoder levels 1, 2, 3 (their num_dec_blocks)
    refine_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion: float = 2.0
    experts: int = 4            # their num_experts (--num_exp_blocks)
    top_k: int = 1              # their topk: not visible in the weights
    rank_type: str = "spread"   # how expert ranks grow (their rank_type)
    rank: int = 2               # their rank (--latent_dim); unused by "spread"
    bias: bool = False          # biases of the decoder's attention/FFN, the fusion 1x1 convs and the output conv
    layernorm: str = "withbias"  # "withbias" or "biasfree" (the blocks' LayerNorm_type)
    in_channels: int = 3

    @property
    def size_multiple(self) -> int:
        # three pixel-unshuffles; the expert patches need nothing more: FFTAttn zero-pads each
        # feature map to its patch size itself, as their code does
        return 8

    def layout(self) -> dict:
        return {"width": self.dim, "encoder": self.blocks, "decoder": self.dec_blocks, "refine": self.refine_blocks}

    def expert_ranks(self, width: int) -> tuple[int, ...]:
        """The ranks of the experts of a decoder block ``width`` channels wide (their ``rank_type``)."""
        n, r = self.experts, self.rank
        if self.rank_type == "spread":
            return tuple(width // 2 ** i for i in range(n))[::-1]
        rule = {"constant": lambda i: r, "lin": lambda i: r + i, "double": lambda i: r + 2 * i,
                "exp": lambda i: r ** (i + 1),
                "fact": lambda i: math.factorial(r + i) if r + i <= 8 else MAX_RANK + 1}[self.rank_type]
        return tuple(rule(i) for i in range(n))

    @property
    def patch_sizes(self) -> tuple[int, ...]:
        """The experts' FFT patch sizes (fixed in their code: 4, 8, 16, ...)."""
        return tuple(2 ** (i + 2) for i in range(self.experts))

    def validate(self) -> None:
        super().validate()
        if self.dim < 1:
            raise ConfigError(f"dim must be >= 1, got {self.dim}")
        if self.layernorm not in ("withbias", "biasfree"):
            raise ConfigError(f"layernorm must be 'withbias' or 'biasfree', got {self.layernorm!r}")
        if self.rank_type not in RANK_TYPES:
            raise ConfigError(f"rank_type must be one of {', '.join(RANK_TYPES)}, got {self.rank_type!r}")
        if not 0.0 < self.ffn_expansion <= 16.0 or int(self.dim * self.ffn_expansion) < 1:
            raise ConfigError(f"ffn_expansion must be in (0, 16] and give at least one channel, got "
                              f"{self.ffn_expansion}")
        if self.experts < 1 or not 1 <= self.top_k <= self.experts:
            raise ConfigError(f"need experts >= 1 and 1 <= top_k <= experts, got experts={self.experts}, "
                              f"top_k={self.top_k}")
        for lvl, h in enumerate(self.heads):
            width = self.dim * 2 ** lvl
            if h < 1 or width % h:
                raise ConfigError(f"width {width} (level {lvl + 1}) is not divisible by {h} heads")
        for lvl in range(3):
            width = self.dim * 2 ** lvl
            ranks = self.expert_ranks(width)
            if self.dec_blocks[lvl] and not all(1 <= r <= MAX_RANK for r in ranks):
                raise ConfigError(f"expert ranks {list(ranks)} at width {width} (rank_type {self.rank_type!r}) "
                                  f"must lie in 1..{MAX_RANK}")


class CrossAttention(nn.Module):
    """Transposed attention with queries from ``x`` (1x1 + dw3x3) and keys/values from ``y``
    (1x1 + dw7x7)."""

    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = conv1x1(dim, dim, bias)
        self.q_dwconv = dwconv(dim, 3, bias)
        self.kv = conv1x1(dim, dim * 2, bias)
        self.kv_dwconv = dwconv(dim * 2, 7, bias)
        self.project_out = conv1x1(dim, dim, bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(y)).chunk(2, dim=1)
        return self.project_out(channel_attention(q, k, v, self.heads, self.temperature))


def to_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, ceil(H/p), ceil(W/p), p, p): zero-padded at the bottom/right to
    multiples of ``p``, then cut into patches.  Shape arithmetic on ``x.shape`` stays dynamic
    in a TorchScript trace."""
    b, c, h, w = x.shape
    ph, pw = (p - h % p) % p, (p - w % p) % p
    x = F.pad(x, (0, pw, 0, ph))
    return x.reshape(b, c, (h + ph) // p, p, (w + pw) // p, p).transpose(3, 4)


def from_patches(x: torch.Tensor, h, w) -> torch.Tensor:
    """Inverse of :func:`to_patches`, cropped to ``h`` x ``w``."""
    b, c, nh, nw, p, _ = x.shape
    return x.transpose(3, 4).reshape(b, c, nh * p, nw * p)[:, :, :h, :w]


class PatchDFT(nn.Module):
    """The real 2-D DFT of a ``p`` x ``p`` patch and its inverse as matrix products (the
    ``"matmul"`` frequency path).  ``p`` is fixed per expert, so the matrices are built once
    (:func:`anyir_edge.models.spectral.dft_cos_sin`, in float64) and kept as non-persistent
    buffers: a trace records them as constants, not as shape-driven Range/Cos/Sin subgraphs.
    Same arithmetic as :func:`~anyir_edge.models.spectral.rfft2_matmul` /
    :func:`~anyir_edge.models.spectral.irfft2_matmul`, with the inverse's 1/p^2 and Hermitian
    weights folded into its matrices."""

    def __init__(self, p: int):
        super().__init__()
        f64 = torch.zeros((), dtype=torch.float64)
        k = p // 2 + 1
        cw, sw = dft_cos_sin(p, k, f64)                   # (p, k): along W, half spectrum
        ch, sh = dft_cos_sin(p, p, f64)                   # (p, p): along H, symmetric
        j = torch.arange(k, device=cw.device)
        weight = torch.where((j == 0) | (2 * j == p), 1.0, 2.0).to(f64) / (p * p)
        for name, m in (("cw", cw), ("sw", sw), ("ch", ch), ("sh", sh),
                        ("icw", weight.view(-1, 1) * cw.T), ("isw", weight.view(-1, 1) * sw.T)):
            self.register_buffer(name, m.float(), persistent=False)

    def rfft2(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``torch.fft.rfft2(x)`` as (real, imag), each (..., p, p//2+1)."""
        re, im = x @ self.cw, -(x @ self.sw)
        return self.ch @ re + self.sh @ im, self.ch @ im - self.sh @ re

    def irfft2(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        """``torch.fft.irfft2(re + i im, s=(p, p))`` (imaginary parts of the DC / Nyquist columns
        drop out, as in a c2r FFT)."""
        re1, im1 = self.ch @ re - self.sh @ im, self.ch @ im + self.sh @ re
        return re1 @ self.icw - im1 @ self.isw


def patch_spectral_product(q: torch.Tensor, k: torch.Tensor, mode: str, dft: PatchDFT | None = None) -> torch.Tensor:
    """``irfft2(rfft2(q) * rfft2(k), s=(p, p))`` over the last two dims (p x p patches)."""
    p = q.shape[-1]
    if mode == "fft":
        out = torch.fft.irfft2(torch.fft.rfft2(q.float()) * torch.fft.rfft2(k.float()), s=(p, p))
        return out.to(q.dtype)
    if mode == "matmul":
        if dft is None:   # matrices from the runtime shape (any p)
            qr, qi = rfft2_matmul(q)
            kr, ki = rfft2_matmul(k)
            return irfft2_matmul(qr * kr - qi * ki, qr * ki + qi * kr, p)
        qr, qi = dft.rfft2(q)
        kr, ki = dft.rfft2(k)
        return dft.irfft2(qr * kr - qi * ki, qr * ki + qi * kr)
    raise ValueError(f"fft_mode {mode!r} is not exact for MoCE-IR (spectra are multiplied); use 'fft' or 'matmul'")


class FFTAttention(FrequencyPath):
    """Their ``FFTAttention`` on ``dim`` channels with patch size ``patch_size`` (see the module docstring)."""

    def __init__(self, dim: int, patch_size: int, fft_mode: str = "fft"):
        super().__init__()
        self.patch_size = patch_size
        self.q = conv1x1(dim, dim)
        self.q_dwconv = dwconv(dim, 3, bias=True)
        self.kv = conv1x1(dim, dim * 2)
        self.kv_dwconv = dwconv(dim * 2, 7, bias=True)
        self.norm = BodyNorm(dim, "withbias")
        self.proj_out = conv1x1(dim, dim, bias=True)
        self.dft = PatchDFT(patch_size)
        self.fft_mode = check_fft_mode(fft_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        q = self.q_dwconv(self.q(x))
        k, v = self.kv_dwconv(self.kv(x)).chunk(2, dim=1)
        p = self.patch_size
        out = patch_spectral_product(to_patches(q, p), to_patches(k, p), self.fft_mode, self.dft)
        out = from_patches(out, h, w)
        return self.proj_out(self.norm(out) * v)


class ModExpert(nn.Module):
    """One expert: ``x + proj[2](body(proj[0](x)) * silu(proj[1](shared)))``."""

    def __init__(self, dim: int, rank: int, patch_size: int, fft_mode: str = "fft"):
        super().__init__()
        self.proj = nn.ModuleList([conv1x1(dim, rank), conv1x1(dim, rank), conv1x1(rank, dim)])
        self.body = FFTAttention(rank, patch_size, fft_mode)

    def forward(self, x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        return x + self.proj[2](self.body(self.proj[0](x)) * F.silu(self.proj[1](shared)))


class Router(nn.Module):
    """Their ``RoutingFunction`` without the noise: gates (B, E), zero but for the top-k softmax
    scores of each image, and the chosen experts (B, k)."""

    def __init__(self, dim: int, freq_dim: int, experts: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(dim, experts, bias=False))
        self.freq_gate = nn.Linear(freq_dim, experts, bias=False)
        # their training loss's complexity prior (expert sizes / the largest); unused in inference
        self.register_buffer("complexity", torch.ones(experts))

    def forward(self, x: torch.Tensor, freq_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = (self.gate(x) + self.freq_gate(freq_emb)).softmax(dim=-1)
        values, chosen = torch.topk(scores, self.top_k, dim=-1)
        return torch.zeros_like(scores).scatter(1, chosen, values), chosen


class AdapterLayer(nn.Module):
    """The mixture of complexity experts (keys ``experts.<e>.0``, ``proj_out``, ``routing``)."""

    def __init__(self, dim: int, freq_dim: int, cfg: MoCEIRConfig, fft_mode: str = "fft"):
        super().__init__()
        self.routing_mode = "dense"
        self.experts = nn.ModuleList([
            nn.ModuleList([ModExpert(dim, r, p, fft_mode)]) for r, p in zip(cfg.expert_ranks(dim), cfg.patch_sizes)])
        self.proj_out = conv1x1(dim, dim)
        self.routing = Router(dim, freq_dim, cfg.experts, cfg.top_k)
        with torch.no_grad():
            sizes = torch.tensor([float(sum(p.numel() for p in e.parameters())) for e in self.experts])
            self.routing.complexity.copy_(sizes / sizes.max())

    def forward(self, x: torch.Tensor, freq_emb: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        gates, chosen = self.routing(x, freq_emb)
        if self.routing_mode == "sparse" and not (torch.jit.is_tracing() or torch.jit.is_scripting()
                                                 or torch.compiler.is_compiling()):
            return self.proj_out(self._sparse(x, shared, gates, chosen))
        out = None
        for e, expert in enumerate(self.experts):
            y = gates[:, e].view(-1, 1, 1, 1) * expert[0](x, shared)
            out = y if out is None else out + y
        return self.proj_out(out)

    def _sparse(self, x, shared, gates, chosen):
        """Only the chosen experts, image by image (eager; data-dependent control flow)."""
        rows = []
        for b, picks in enumerate(chosen.tolist()):
            xb, sb = x[b:b + 1], shared[b:b + 1]
            acc = torch.zeros_like(xb)
            for e in picks:
                acc = acc + gates[b, e] * self.experts[e][0](xb, sb)
            rows.append(acc)
        return torch.cat(rows, dim=0)


class EncoderBlock(nn.Module):
    """``x + mixer(norms[0](x))`` then ``x + ffn(norms[1](x))``; always with biases (as theirs)."""

    def __init__(self, dim: int, heads: int, cfg: MoCEIRConfig):
        super().__init__()
        self.norms = nn.ModuleList([BodyNorm(dim, cfg.layernorm), BodyNorm(dim, cfg.layernorm)])
        self.mixer = MDTA(dim, heads, bias=True)
        self.ffn = GatedFFN(dim, cfg.ffn_expansion, bias=True, dw_name="dwconv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norms[0](x))
        return x + self.ffn(self.norms[1](x))


class DecoderBlock(nn.Module):
    """Shared attention, the expert adapter and cross attention, then the FFN (see the module docstring)."""

    def __init__(self, dim: int, heads: int, freq_dim: int, cfg: MoCEIRConfig, fft_mode: str = "fft"):
        super().__init__()
        self.norms = nn.ModuleList([BodyNorm(dim, cfg.layernorm), BodyNorm(dim, cfg.layernorm)])
        self.proj = nn.ModuleList([conv1x1(dim, dim, bias=True), conv1x1(dim, dim, bias=True)])
        self.shared = MDTA(dim, heads, cfg.bias)
        self.mixer = CrossAttention(dim, heads, cfg.bias)
        self.ffn = GatedFFN(dim, cfg.ffn_expansion, cfg.bias, dw_name="dwconv")
        self.adapter = AdapterLayer(dim, freq_dim, cfg, fft_mode)

    def forward(self, x: torch.Tensor, freq_emb: torch.Tensor) -> torch.Tensor:
        n = self.norms[0](x)
        s = self.shared(self.proj[0](n))
        a = self.adapter(self.proj[1](n), freq_emb, s)
        x = self.mixer(a, s) + x
        return x + self.ffn(self.norms[1](x))


class EncoderGroup(nn.Module):
    def __init__(self, count: int, dim: int, heads: int, cfg: MoCEIRConfig):
        super().__init__()
        self.layers = nn.ModuleList([EncoderBlock(dim, heads, cfg) for _ in range(count)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class DecoderGroup(nn.Module):
    def __init__(self, count: int, dim: int, heads: int, freq_dim: int, cfg: MoCEIRConfig, fft_mode: str = "fft"):
        super().__init__()
        self.layers = nn.ModuleList([DecoderBlock(dim, heads, freq_dim, cfg, fft_mode) for _ in range(count)])

    def forward(self, x: torch.Tensor, freq_emb: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, freq_emb)
        return x


class HighPass(nn.Module):
    """Their ``HighPassConv2d``: a depthwise 3x3 initialised to the Laplacian-like high-pass
    (their ``freeze`` does not freeze it: the weight is a trained parameter)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = dwconv(dim, 3)
        with torch.no_grad():
            k = -torch.ones(3, 3)
            k[1, 1] = 8.0
            self.conv.weight.copy_(k.expand(dim, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FrequencyEmbedding(nn.Module):
    """High-pass + GELU, spatial mean, MLP (dim -> 2 dim -> dim): one vector per image."""

    def __init__(self, dim: int):
        super().__init__()
        self.high_conv = nn.Sequential(HighPass(dim), nn.GELU())
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # kept 4-D, then flattened: the form ExecuTorch's XNNPACK takes (global average pooling)
        return self.mlp(self.high_conv(x).mean(dim=(2, 3), keepdim=True).flatten(1))


class MoCEIR(RestorationNet):
    """The authors' MoCE-IR (see the module docstring); ``forward`` pads to a multiple of 8 and crops."""

    arch = "moce-ir"
    fft_modes = ("fft", "matmul")

    def __init__(self, config: MoCEIRConfig | None = None, fft_mode: str = "fft", name: str | None = None):
        cfg = config or MoCEIRConfig()
        super().__init__(cfg, fft_mode, name)
        c, h = cfg.dim, cfg.heads
        widths = [c * 2 ** i for i in range(4)]
        self.patch_embed = PatchEmbed(cfg.in_channels, c)
        self.freq_embed = FrequencyEmbedding(widths[3])
        self.enc = nn.ModuleList([
            nn.ModuleList([EncoderGroup(cfg.blocks[i], widths[i], h[i], cfg), Resample(downsample(widths[i]))])
            for i in range(3)])
        self.latent = EncoderGroup(cfg.blocks[3], widths[3], h[3], cfg)
        # deepest first, as their ``dec`` list: level 3 (4C), level 2 (2C), level 1 (C)
        self.dec = nn.ModuleList([
            nn.ModuleList([Resample(upsample(widths[i + 1])), conv1x1(widths[i + 1], widths[i], cfg.bias),
                           DecoderGroup(cfg.dec_blocks[i], widths[i], h[i], widths[3], cfg, fft_mode)])
            for i in (2, 1, 0)])
        self.refinement = EncoderGroup(cfg.refine_blocks, c, h[0], cfg)
        self.output = nn.Conv2d(c, cfg.in_channels, 3, padding=1, bias=cfg.bias)

    @property
    def routing_mode(self) -> str:
        return next((m.routing_mode for m in self.modules() if isinstance(m, AdapterLayer)), "dense")

    def set_routing(self, mode: str) -> "MoCEIR":
        """"dense" (every expert, selected by its gate: exportable, the default) or "sparse" (only
        the chosen experts, per image; eager PyTorch only, a trace still runs the dense form).
        Both compute the same function."""
        if mode not in ROUTING_MODES:
            raise ValueError(f"routing must be one of {', '.join(ROUTING_MODES)}, got {mode!r}")
        for m in self.modules():
            if isinstance(m, AdapterLayer):
                m.routing_mode = mode
        return self

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.patch_embed(x)
        skips = []
        for group, down in self.enc:
            feats = group(feats)
            skips.append(feats)
            feats = down(feats)
        feats = self.latent(feats)
        freq_emb = self.freq_embed(feats)
        for up, fuse, group in self.dec:
            feats = group(fuse(torch.cat([up(feats), skips.pop()], dim=1)), freq_emb)
        return self.output(self.refinement(feats)) + x
