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
  -> one matrix product of the (1, L) weights with the prompts as an (L, P*S*S) matrix.

The prompt's bilinear resize to the feature map's size stays (its output size is the input's,
known only at run time).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..deploy import replace_modules
from ..layers import Resample
from ..mobile import MobileTransformerBlock, mobile_resample
from .model import Block, PromptGen, PromptIR


class MobilePromptGen(nn.Module):
    """:class:`~anyir_edge.models.promptir.model.PromptGen` for batch 1: the weighted sum of the
    prompts as one (1, L) x (L, P*S*S) matrix product."""

    def __init__(self, gen: PromptGen):
        super().__init__()
        _, n, p, s, _ = gen.prompt_param.shape
        self.shape = (1, p, s, s)
        self.register_buffer("prompts", gen.prompt_param.detach().reshape(n, p * s * s).clone())
        self.linear_layer, self.conv3x3 = gen.linear_layer, gen.conv3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.linear_layer(x.mean(dim=(-2, -1))), dim=1)    # (1, L)
        prompt = torch.mm(weights, self.prompts).reshape(self.shape)                # (1, P, S, S)
        prompt = F.interpolate(prompt, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv3x3(prompt)


def mobile(model: PromptIR) -> PromptIR:
    """The CPU deploy form of ``model`` (modified in place) in the mobile form."""
    replace_modules(model, Block, MobileTransformerBlock.from_block)
    replace_modules(model, PromptGen, MobilePromptGen)
    return replace_modules(model, Resample, mobile_resample)
