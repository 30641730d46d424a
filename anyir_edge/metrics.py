"""Image quality metrics, with the conventions used everywhere in anyir-edge.

* Images are compared as full RGB, after rounding to uint8 (``quantize``), data range 255.
* PSNR = 10 log10(255^2 / MSE) over all pixels and channels; identical images give ``inf``.
* SSIM follows Wang et al. 2004 as scikit-image computes it with ``gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1``: an 11x11
  Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, the map averaged over the region
  5 pixels away from the borders, then over channels.  (Tested against scikit-image.)
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def quantize(img: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 with rounding (uint8 passes through)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    a, b = _pair(a, b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11, got {a.shape[1]}x{a.shape[0]}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))
