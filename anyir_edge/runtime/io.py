"""Image files through OpenCV (``cv2.imdecode`` / ``cv2.imencode``), written atomically.

Arrays read here are in OpenCV's channel order (BGR / BGRA / gray) with the file's dtype
(uint8 or uint16, float32 for EXR/float TIFF); pass ``bgr=True`` to ``Restorer.restore``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write
from .errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".ppm", ".pgm",
                  ".pnm", ".exr", ".hdr")
_NO_16BIT = (".jpg", ".jpeg", ".bmp", ".webp", ".hdr")
_NO_ALPHA = (".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pnm", ".hdr")


def _cv2():
    import cv2

    try:  # decoders log warnings ("PNG input buffer is incomplete"): we report errors ourselves
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass
    return cv2


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as OpenCV does (``IMREAD_UNCHANGED``); one-line errors."""
    cv2 = _cv2()
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: cannot decode: truncated or corrupt file, or not a supported image format")
    if img.size == 0:
        raise ImageError(f"{path}: zero-size image")
    return img


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Read an image as 8-bit RGB HxWx3 (gray expanded, alpha dropped, 16-bit scaled down):
    the form training and evaluation use."""
    cv2 = _cv2()
    img = read_image(path)
    if img.dtype == np.uint16:
        img = np.rint(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: expected an 8- or 16-bit image, got {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def adapt_for_format(img: np.ndarray, suffix: str) -> np.ndarray:
    """Make ``img`` encodable as ``suffix``: 16-bit -> 8-bit and alpha dropped where unsupported."""
    suffix = suffix.lower()
    if img.dtype == np.uint16 and suffix in _NO_16BIT:
        img = np.rint(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if img.dtype in (np.float32, np.float64) and suffix not in (".exr", ".hdr", ".tif", ".tiff"):
        img = np.rint(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4 and suffix in _NO_ALPHA:
        img = img[..., :3]
    return np.ascontiguousarray(img)


def write_image(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Encode ``img`` (OpenCV channel order) by the suffix of ``path`` and write it atomically."""
    cv2 = _cv2()
    path = Path(path)
    suffix = path.suffix.lower()
    img = adapt_for_format(img, suffix)
    try:
        ok, buf = cv2.imencode(suffix, img)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "encoder error"
        raise ImageError(f"{path}: cannot encode as {suffix} ({msg[:120]})") from None
    if not ok:
        raise ImageError(f"{path}: cannot encode as {suffix}")
    return atomic_write(path, buf.tobytes())
