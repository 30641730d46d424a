"""Deploy-time reparametrisation: the same function as the trained model, in a form that CPU
inference engines run faster.  Applied to a copy of the model just before ONNX tracing; the
parity certificate compares the engine against the *original* PyTorch model, so a mistake
here cannot pass unnoticed.

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

import copy

import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_MULTIPLE = 8


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class DeployGDFN(nn.Module):
    """:class:`anyir_edge.models.anyir.GDFN` as two zero-padded branches (see the module docstring)."""

    def __init__(self, g: nn.Module, multiple: int = CHANNEL_MULTIPLE):
        super().__init__()
        dim, h = g.project_out.out_channels, g.project_out.in_channels
        hp = _round_up(h, multiple)
        w_in, w_dw, w_out = g.project_in.weight.detach(), g.dw.weight.detach(), g.project_out.weight.detach()
        if any(c.bias is not None for c in (g.project_in, g.dw, g.project_out)):
            raise ValueError("DeployGDFN expects bias-free GDFN convolutions")
        self.in_a = nn.Conv2d(dim, hp, 1, bias=False)
        self.in_b = nn.Conv2d(dim, hp, 1, bias=False)
        self.dw_a = nn.Conv2d(hp, hp, 3, padding=1, groups=hp, bias=False)
        self.dw_b = nn.Conv2d(hp, hp, 3, padding=1, groups=hp, bias=False)
        self.project_out = nn.Conv2d(hp, dim, 1, bias=False)
        with torch.no_grad():
            for conv in (self.in_a, self.in_b, self.dw_a, self.dw_b, self.project_out):
                conv.weight.zero_()
            self.in_a.weight[:h] = w_in[:h]
            self.in_b.weight[:h] = w_in[h:]
            self.dw_a.weight[:h] = w_dw[:h]
            self.dw_b.weight[:h] = w_dw[h:]
            self.project_out.weight[:, :h] = w_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project_out(F.gelu(self.dw_a(self.in_a(x))) * self.dw_b(self.in_b(x)))


def deploy_copy(model: nn.Module, multiple: int = CHANNEL_MULTIPLE) -> nn.Module:
    """A copy of ``model`` with every GDFN in its deploy form; ``model`` is left untouched."""
    from ..models.anyir import GDFN

    out = copy.deepcopy(model)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GDFN):
                setattr(parent, name, DeployGDFN(child, multiple))
    return out
