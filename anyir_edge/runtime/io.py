"""Image files through OpenCV (``cv2.imdecode`` / ``cv2.imencode``), written atomically.

Arrays read here are in OpenCV's channel order (BGR / BGRA / gray) with the file's dtype
(uint8 or uint16, float32 for EXR/float TIFF); pass ``bgr=True`` to ``Restorer.restore``.
An EXIF orientation tag is applied on read, as every viewer does (a phone photo stored
sideways comes back upright), and the written file carries no tag, so it displays the same.
Images with an alpha channel are read as stored.
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
    try:
        img = _decode(cv2, data)
    except cv2.error as e:  # e.g. a header that declares more pixels than OpenCV's limit
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise ImageError(f"{path}: cannot decode ({(lines[-1] if lines else 'decoder error')[:160]})") from None
    if img is None:
        raise ImageError(f"{path}: cannot decode: truncated or corrupt file, or not a supported image format")
    if img.size == 0:
        raise ImageError(f"{path}: zero-size image")
    return img


def _decode(cv2, data: np.ndarray):
    """Decode as stored (IMREAD_UNCHANGED: alpha, 16 bits) but upright: OpenCV applies EXIF
    orientation only without IMREAD_UNCHANGED, so a file that can carry the tag and has no
    alpha is decoded with ANYCOLOR | ANYDEPTH, which keeps gray, colour and 16 bits."""
    oriented = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    head = data[:65536].tobytes()
    if head[:3] == b"\xff\xd8\xff":  # JPEG: no alpha, 8 bits
        return cv2.imdecode(data, oriented)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    tiff = head[:4] in (b"II*\x00", b"MM\x00*")
    if img is not None and (tiff or b"Exif\x00\x00" in head) and img.dtype in (np.uint8, np.uint16) and (
            img.ndim == 2 or img.shape[2] in (1, 3)):
        up = cv2.imdecode(data, oriented)
        if up is not None and up.dtype == img.dtype and up.size == img.size:
            return up
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
    try:
        return atomic_write(path, buf.tobytes())
    except OSError as e:  # read-only folder, full disk, ...: nothing half-written is left (atomic)
        raise ImageError(f"{path}: cannot write ({e.strerror or type(e).__name__})") from None
