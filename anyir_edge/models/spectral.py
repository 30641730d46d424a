"""The frequency path of AnyIR's spatial-frequency fusion, in three exact implementations.

Algorithm 2 of the paper computes ``irfft2(rfft2(A) + rfft2(G), s=(H, W))``.  Deployment
targets differ in what they can run, so the operation is provided three ways, selected by
``fft_mode``:

``"fft"``
    The reference: ``torch.fft.rfft2`` / ``torch.fft.irfft2`` with ``s=(H, W)`` (without
    ``s`` an odd width comes back one column short).
``"fold"``
    The algebraically equal sum ``A + G``: rfft2/irfft2 are linear and mutually inverse, so
    the frequency path folds away.  Exact up to float rounding; the cheapest graph.
``"matmul"``
    The real DFT as real matrix products whose matrices are built from the runtime shape
    (``arange`` -> integer ``(n * k) mod N`` -> angle -> cos/sin).  It keeps the
    rfft2 -> spectral op -> irfft2 structure, so it also serves frequency paths that are not
    linear, and any ONNX exporter traces it with dynamic H and W.  The phase index is reduced
    modulo N in integers before the float conversion, which keeps the angles exact.
"""
from __future__ import annotations

import math

import torch

FFT_MODES = ("fft", "fold", "matmul")


def check_fft_mode(mode: str) -> str:
    if mode not in FFT_MODES:
        raise ValueError(f"unknown fft_mode {mode!r}; expected one of {', '.join(FFT_MODES)}")
    return mode


def dft_cos_sin(n: int, k: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of 2*pi*(i*j mod n)/n for i < n, j < k, as (n, k) matrices."""
    i = torch.arange(n, device=like.device)
    j = torch.arange(k, device=like.device)
    idx = torch.remainder(i.unsqueeze(1) * j.unsqueeze(0), n)
    ang = idx.to(like.dtype) * (2.0 * math.pi / n)
    return torch.cos(ang), torch.sin(ang)


def rfft2_matmul(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fft.rfft2(x)`` as (real, imag) tensors of shape (..., H, W//2+1)."""
    h, w = x.shape[-2], x.shape[-1]
    cw, sw = dft_cos_sin(w, w // 2 + 1, x)          # (W, K)
    re = x @ cw                                       # real DFT along W: e^{-i t}
    im = -(x @ sw)
    ch, sh = dft_cos_sin(h, h, x)                    # (H, H), symmetric
    # complex DFT along H: (cos - i sin)(re + i im)
    re2 = ch @ re + sh @ im
    im2 = ch @ im - sh @ re
    return re2, im2


def irfft2_matmul(re: torch.Tensor, im: torch.Tensor, w: int) -> tuple[torch.Tensor]:
    """``torch.fft.irfft2(re + i*im, s=(H, w))`` for a half spectrum of shape (..., H, w//2+1)."""
    h = re.shape[-2]
    ch, sh = dft_cos_sin(h, h, re)
    # inverse complex DFT along H: (cos + i sin)(re + i im) / H
    re1 = (ch @ re - sh @ im) / h
    im1 = (ch @ im + sh @ re) / h
    k = w // 2 + 1
    cw, sw = dft_cos_sin(w, k, re)                   # (W, K)
    # Hermitian weights: DC (and Nyquist for even W) once, the other bins twice.  The
    # imaginary parts of DC/Nyquist drop out because sin(0) = sin(pi*n) = 0, as in c2r FFTs.
    kk = torch.arange(k, device=re.device)
    weight = torch.where((kk == 0) | (kk * 2 == w), 1.0, 2.0).to(re.dtype) / w
    return (re1 * weight) @ cw.transpose(0, 1) - (im1 * weight) @ sw.transpose(0, 1)


def frequency_sum(a: torch.Tensor, g: torch.Tensor, mode: str) -> torch.Tensor:
    """``irfft2(rfft2(a) + rfft2(g), s=(H, W))`` computed the way ``mode`` says."""
    if mode == "fold":
        return a + g
    h, w = a.shape[-2], a.shape[-1]
    if mode == "fft":
        spec = torch.fft.rfft2(a.float()) + torch.fft.rfft2(g.float())
        return torch.fft.irfft2(spec, s=(h, w)).to(a.dtype)
    if mode == "matmul":
        ra, ia = rfft2_matmul(a)
        rg, ig = rfft2_matmul(g)
        return irfft2_matmul(ra + rg, ia + ig, w)
    raise ValueError(f"unknown fft_mode {mode!r}; expected one of {', '.join(FFT_MODES)}")
