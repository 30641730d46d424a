"""Parameter and multiply-accumulate counts.

MACs are ``torch.utils.flop_counter.FlopCounterMode`` FLOPs divided by 2 (the counter counts
one multiply-accumulate as two FLOPs; the paper, like fvcore/thop, reports MACs and calls
them FLOPs).  The counter sees convolutions and matrix products; element-wise work and the
FFTs of the reference frequency path are not counted (the same convention as the paper's
tools), so counts are taken with ``fft_mode="fft"`` or ``"fold"``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, height: int = 224, width: int | None = None, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on a (batch, 3, height, width) input."""
    width = height if width is None else width
    p = next(model.parameters())
    x = torch.zeros(batch, 3, height, width, dtype=p.dtype, device=p.device)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
