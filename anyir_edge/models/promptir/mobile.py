"""PromptIR's mobile deploy form (:mod:`anyir_edge.models.mobile`): one image at a time, in
operators phone delegates (ExecuTorch's XNNPACK, LiteRT, Core ML) take.

Applied on top of the CPU deploy form (:func:`anyir_edge.models.promptir.deploy`: FFNs split
and padded to multiples of 8):

* every Restormer block (the U-Net's and the three ``noise_level`` blocks) ->
  :class:`~anyir_edge.models.mobile.MobileTransformerBlock` (LayerNorm as 1x1 convolutions with
  its affine part folded into the next convolutions, ``qkv`` + ``chunk`` as three convolutions,
  the batch-1 attention);
* down / up sampling -> one strided (transposed) convolution each;
* a prompt block's softmax-weighted sum of its L prompts (a broadcast product and a ``sum``)
  -> one matrix product of the (1, L) weights with the prompts as an (L, P*S*S) matrix;
* for Core ML only, the prompt's bilinear resize to the feature map's run-time size -> two
  matrix products with interpolation matrices built from the feature map by tensor operations
  (:func:`bilinear_matrix`): coremltools 9 cannot convert ``upsample_bilinear`` to a run-time
  size.  ExecuTorch and LiteRT keep the resize (on ExecuTorch's XNNPACK the matrices cost 6 more
  partitions and 66 more ops on portable kernels: cumulative sums, broadcasts, layout copies).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..deploy import replace_modules
from ..layers import Resample
from ..mobile import MobileTransformerBlock, mobile_resample, narrow_output_conv
from .model import Block, PromptGen, PromptIR


def bilinear_matrix(ones: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The (1, 1, n, size) matrix of ``F.interpolate(..., mode="bilinear", align_corners=False)``
    along one axis, from ``size`` to ``n`` samples: ``ones`` is a (1, 1, n, 1) tensor of ones,
    ``grid`` the source positions ``0 .. size - 1``.

    Row i holds the hat weights ``relu(1 - |src_i - j|)`` of the source position
    ``src_i = clamp((i + 0.5) * size / n - 0.5, 0, size - 1)``: the two linear-interpolation
    weights (one weight of 1 where the position is clamped), as PyTorch computes them.  ``n``
    is read from a cumulative sum, not from the tensor's shape, so a trace with a dynamic size
    holds no arithmetic on symbolic sizes."""
    size = grid.shape[-1]
    pos = torch.cumsum(ones, dim=2)                                  # 1 .. n
    src = ((pos - 0.5) * size / pos[:, :, -1:] - 0.5).clamp(0, size - 1)
    return torch.relu(1 - (src - grid).abs())


class MobilePromptGen(nn.Module):
    """:class:`~anyir_edge.models.promptir.model.PromptGen` for batch 1: the weighted sum of the
    prompts as one (1, L) x (L, P*S*S) matrix product; ``resize_matrices``: the resize to the
    feature map's size as interpolation matrices (:func:`bilinear_matrix`) instead of
    ``F.interpolate``."""

    def __init__(self, gen: PromptGen, resize_matrices: bool = False):
        super().__init__()
        _, n, p, s, _ = gen.prompt_param.shape
        self.shape = (1, p, s, s)
        self.register_buffer("prompts", gen.prompt_param.detach().reshape(n, p * s * s).clone())
        self.resize_matrices = resize_matrices
        self.register_buffer("grid", torch.arange(s, dtype=gen.prompt_param.dtype))
        self.linear_layer, self.conv3x3 = gen.linear_layer, gen.conv3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # keepdim, then flatten: XNNPACK's global average pooling takes only a 4-D mean over H, W
        # kept as (1, C, 1, 1); without keepdim it stays on ExecuTorch's portable kernels
        weights = torch.softmax(self.linear_layer(x.mean(dim=(2, 3), keepdim=True).flatten(1)), dim=1)  # (1, L)
        prompt = torch.mm(weights, self.prompts).reshape(self.shape)                # (1, P, S, S)
        if self.resize_matrices:
            ry = bilinear_matrix(torch.ones_like(x[:, :1, :, :1]), self.grid)                  # (1, 1, H, S)
            rx = bilinear_matrix(torch.ones_like(x[:, :1, :1, :]).transpose(2, 3), self.grid)  # (1, 1, W, S)
            prompt = torch.matmul(torch.matmul(ry, prompt), rx.transpose(2, 3))
        else:
            prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


def mobile(model: PromptIR, target: str | None = None) -> PromptIR:
    """The CPU deploy form of ``model`` (modified in place) in the mobile form for the phone
    ``target`` (Core ML: the prompt resize as matrices)."""
    replace_modules(model, Block, MobileTransformerBlock.from_block)
    replace_modules(model, PromptGen, lambda g: MobilePromptGen(g, resize_matrices=target == "coreml"))
    model.output = narrow_output_conv(model.output)
    return replace_modules(model, Resample, mobile_resample)
