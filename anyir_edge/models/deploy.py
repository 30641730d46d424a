"""Deploy-time rewrites shared by the architectures: the same function as the trained model, in
a form that CPU inference engines run faster.  Each architecture's descriptor
(:class:`anyir_edge.models.base.Architecture`) composes the ones it needs in its ``deploy``;
the exporter applies it to a copy of the model just before tracing.  The parity certificate
compares the engine against the *original* PyTorch model, so a mistake here cannot pass
unnoticed.

GDFN (``project_in`` 1x1 conv to 2h channels -> depthwise 3x3 -> ``chunk(2)`` -> GELU gate ->
``project_out``) becomes two branches of h' channels, h' = h rounded up to a multiple of 8
with zero filters:

* no ``Split`` node (onnxruntime copies both halves of the largest activation of the block);
* every depthwise conv has a channel count onnxruntime's NCHWc layout accepts: AnyIR's
  h = int(2.66 C) (42, 85, 170, 340 channels) otherwise falls back to a generic grouped
  convolution several times slower than the blocked kernel.

The zero channels are exact: the padded branch-a channels are GELU(0) = 0, the padded
branch-b channels are 0, their product is 0 and ``project_out``'s matching input weights
are 0.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_MULTIPLE = 8


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class DeployGDFN(nn.Module):
    """:class:`anyir_edge.models.layers.GatedFFN` as two zero-padded branches (see the module docstring).

    Biases, where the FFN has them, are split the same way (the padded channels get bias 0)."""

    def __init__(self, g: nn.Module, multiple: int = CHANNEL_MULTIPLE):
        super().__init__()
        src_in, src_dw, src_out = g.project_in, g.depthwise, g.project_out
        dim, h = src_out.out_channels, src_out.in_channels
        hp = _round_up(h, multiple)
        bias_in, bias_dw = src_in.bias is not None, src_dw.bias is not None
        self.in_a = nn.Conv2d(dim, hp, 1, bias=bias_in)
        self.in_b = nn.Conv2d(dim, hp, 1, bias=bias_in)
        self.dw_a = nn.Conv2d(hp, hp, 3, padding=1, groups=hp, bias=bias_dw)
        self.dw_b = nn.Conv2d(hp, hp, 3, padding=1, groups=hp, bias=bias_dw)
        self.project_out = nn.Conv2d(hp, dim, 1, bias=src_out.bias is not None)
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()
            for (a, b), src in (((self.in_a, self.in_b), src_in), ((self.dw_a, self.dw_b), src_dw)):
                a.weight[:h], b.weight[:h] = src.weight[:h], src.weight[h:]
                if src.bias is not None:
                    a.bias[:h], b.bias[:h] = src.bias[:h], src.bias[h:]
            self.project_out.weight[:, :h] = src_out.weight
            if src_out.bias is not None:
                self.project_out.bias.copy_(src_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(F.gelu(self.dw_a(self.in_a(x))) * self.dw_b(self.in_b(x)))


def replace_modules(model: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Replace, in place, every submodule of type ``kind`` with ``make(submodule)``; returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, make(child))
    return model


def split_gated_ffns(model: nn.Module, multiple: int = CHANNEL_MULTIPLE) -> nn.Module:
    """Every :class:`~anyir_edge.models.layers.GatedFFN` of ``model`` (in place) as a :class:`DeployGDFN`."""
    from .layers import GatedFFN

    return replace_modules(model, GatedFFN, lambda g: DeployGDFN(g, multiple))
