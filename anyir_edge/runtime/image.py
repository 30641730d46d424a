"""Array plumbing of the runtime: dtype/channel conversion, padding and tiling with blending.

Everything here is numpy; the engines only ever see float32 NCHW RGB in [0, 1] whose H and W
are multiples of the model's size multiple.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import ImageError, ImageWarning

_INT_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    """numpy twin of :func:`anyir_edge.models.base.pad_to_multiple` for (..., H, W) arrays.

    Pads at the bottom, then at the right, up to ``multiple``: reflect padding, or edge
    replication for a side that is not longer than its pad (1- to 4-pixel sides with
    multiple 8).  The order (rows first) matters in the corner and follows the model.
    """
    h, w = x.shape[-2], x.shape[-1]
    ph, pw = (-h) % multiple, (-w) % multiple
    lead = [(0, 0)] * (x.ndim - 2)
    if ph:
        x = np.pad(x, lead + [(0, ph), (0, 0)], mode="reflect" if ph < h else "edge")
    if pw:
        x = np.pad(x, lead + [(0, 0), (0, pw)], mode="reflect" if pw < w else "edge")
    return x


@dataclass
class Prepared:
    """An image converted to the model's input, plus what is needed to convert back."""

    rgb: np.ndarray           # (3, H, W) float32 in [0, 1]
    dtype: np.dtype
    shape: tuple
    gray: bool
    alpha: np.ndarray | None  # the original alpha plane, untouched
    bgr: bool


def prepare(image: np.ndarray, bgr: bool = False) -> Prepared:
    """Validate ``image`` (HxW, HxWx1, HxWx3 or HxWx4; uint8, uint16 or float) for the model."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image must be a numpy array, got {type(image).__name__}")
    dtype = image.dtype
    if dtype not in _INT_SCALE and dtype not in _FLOATS:
        raise ImageError(f"unsupported image dtype {dtype}; expected uint8, uint16 or float32 in [0, 1]")
    if image.ndim == 2:
        chans = 0
    elif image.ndim == 3 and image.shape[2] in (1, 3, 4):
        chans = image.shape[2]
    else:
        raise ImageError(f"unsupported image shape {image.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"zero-size image ({h}x{w})")
    alpha = image[..., 3].copy() if chans == 4 else None
    swap = bgr and chans in (3, 4)
    # filled plane by plane: one float32 copy of the image, however large (a 4K photo is 100 MB)
    rgb = np.empty((3, h, w), np.float32)
    for i in range(3):
        plane = image if chans == 0 else image[..., 0 if chans == 1 else (2 - i if swap else i)]
        if dtype in _FLOATS:
            rgb[i] = plane  # float64 beyond float32's range becomes inf: refused below
        else:
            np.multiply(plane, np.float32(1.0 / _INT_SCALE[dtype]), out=rgb[i], dtype=np.float32)
    if dtype in _FLOATS:
        if not np.isfinite(rgb).all():
            raise ImageError("image contains NaN or infinite values")
        top = float(rgb.max())
        if top > 1.5:  # 0..255 (or 0..65535) values in a float array would all clip to white
            import warnings

            warnings.warn(f"float image with values up to {top:g}: expected [0, 1] (divide by 255 first); "
                          "values above 1 are clipped", ImageWarning, stacklevel=3)
        np.clip(rgb, 0.0, 1.0, out=rgb)
    return Prepared(rgb, dtype, image.shape, chans in (0, 1), alpha, swap)


def finish(p: Prepared, rgb: np.ndarray) -> np.ndarray:
    """Turn the model output (3, H, W) float back into the input's dtype and layout.
    ``rgb`` is the runtime's own output buffer: it is clipped and scaled in place."""
    x = rgb if rgb.dtype == np.float32 and rgb.flags.writeable else rgb.astype(np.float32)
    np.clip(x, 0.0, 1.0, out=x)
    if p.gray:
        x = x.mean(axis=0, keepdims=True, dtype=np.float32)
    if p.dtype in _INT_SCALE:
        x *= np.float32(_INT_SCALE[p.dtype])
        np.rint(x, out=x)
    x = x.transpose(1, 2, 0)
    if p.bgr:
        x = x[..., ::-1]
    x = x.astype(p.dtype)
    if p.alpha is not None:
        x = np.concatenate([x, p.alpha[..., None]], axis=2)
    return np.ascontiguousarray(x.reshape(p.shape))


# ------------------------------------------------------------------ tiling
def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``n`` with at least ``overlap`` shared."""
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return starts


def ramp_weights(start: int, length: int, n: int, overlap: int) -> np.ndarray:
    """1-D blending weights of one tile: raised-cosine ramps over the overlaps, 1 elsewhere.

    Sides on the image border get no ramp.  Two ramps of neighbouring tiles sum to exactly 1
    over an overlap of ``overlap`` pixels; every weight is > 0, so normalising by the summed
    weights is always defined.
    """
    w = np.ones(length, np.float32)
    ov = min(overlap, length // 2)
    if ov <= 0:
        return w
    r = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ov) + 0.5) / ov)).astype(np.float32)
    if start > 0:
        w[:ov] = r
    if start + length < n:
        w[length - ov:] = np.minimum(w[length - ov:], r[::-1])
    return w


def blend_tiles(x: np.ndarray, tiles, overlap: int, run) -> np.ndarray:
    """Run ``run`` on each (y0, x0, th, tw) tile of (N, C, H, W) ``x`` and blend the results with
    :func:`ramp_weights` over ``overlap`` (the weights sum to 1 everywhere the tiles cover)."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for y0, x0, th, tw in tiles:
        res = run(np.ascontiguousarray(x[:, :, y0:y0 + th, x0:x0 + tw]))
        wt = ramp_weights(y0, th, h, overlap)[:, None] * ramp_weights(x0, tw, w, overlap)[None, :]
        out[:, :, y0:y0 + th, x0:x0 + tw] += res * wt
        wsum[y0:y0 + th, x0:x0 + tw] += wt
    out /= wsum
    return out


def auto_tile(pixels: int, bytes_per_pixel: float, budget: int, multiple: int, overlap: int) -> int:
    """Largest square tile (a multiple of ``multiple``) whose activations fit in ``budget``."""
    side = int(math.sqrt(max(budget, 1) / bytes_per_pixel)) // multiple * multiple
    floor = max(64, (2 * overlap + multiple) // multiple * multiple + multiple)
    return max(side, floor)
