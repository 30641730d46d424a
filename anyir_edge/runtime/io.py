"""Image files through OpenCV (``cv2.imdecode`` / ``cv2.imencode``), written atomically.

Arrays read here are in OpenCV's channel order (BGR / BGRA / gray) with the file's dtype
(uint8 or uint16, float32 for EXR/float TIFF); pass ``bgr=True`` to ``Restorer.restore``.
An EXIF orientation tag is applied on read, as every viewer does (a phone photo stored
sideways comes back upright). Images with an alpha channel are read as stored.

:func:`read_metadata` / ``write_image(..., metadata=)`` carry a photo's colour profile (ICC) and
EXIF into a JPEG or PNG output (spliced into the encoded file, the pixels are not re-encoded),
with the orientation tag reset to 1 because the pixels are already upright.  Other output
formats get the pixels only.  Reading the metadata needs Pillow (absent: nothing is carried).
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
        msg = str(e)
        if "MAX_IMAGE_PIXELS" in msg or "MAX_IMAGE_WIDTH" in msg or "MAX_IMAGE_HEIGHT" in msg:
            why = "its header declares more pixels than the decoder accepts (OpenCV's CV_IO_MAX_IMAGE_PIXELS)"
        else:
            lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
            why = (lines[-1] if lines else "decoder error").split(" error: ", 1)[-1]
        raise ImageError(f"{path}: cannot decode: {why[:160]}") from None
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
    exif = tiff or b"Exif\x00\x00" in head or b"eXIf" in head  # JPEG/WebP APP1, PNG eXIf chunk, TIFF IFD
    if img is not None and exif and img.dtype in (np.uint8, np.uint16) and (img.ndim == 2 or img.shape[2] in (1, 3)):
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


def read_metadata(path: str | os.PathLike) -> dict[str, bytes]:
    """The ICC profile (``icc``) and EXIF (``exif``, orientation reset to 1) of an image file; {}
    when it has none, cannot be parsed, or Pillow is not installed.  Reads the header only."""
    try:
        from PIL import Image
    except ImportError:
        return {}
    out: dict[str, bytes] = {}
    try:
        with Image.open(path) as im:
            icc = im.info.get("icc_profile")
            if icc:
                out["icc"] = bytes(icc)
            exif = im.getexif()
            if len(exif):
                if 0x0112 in exif:
                    exif[0x0112] = 1
                data = exif.tobytes()
                out["exif"] = data[6:] if data.startswith(b"Exif\x00\x00") else data
    except Exception:  # a file Pillow cannot parse keeps no metadata; the pixels come from OpenCV
        return {}
    return out


def _splice_jpeg(buf: bytes, meta: dict[str, bytes]) -> bytes:
    """APP1 (Exif) and APP2 (ICC_PROFILE, in chunks) inserted after the SOI marker."""
    segs = []
    exif = meta.get("exif")
    if exif and len(exif) + 8 <= 0xFFFF:
        payload = b"Exif\x00\x00" + exif
        segs.append(b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload)
    icc = meta.get("icc")
    if icc:
        size = 0xFFFF - 2 - 14
        chunks = [icc[i:i + size] for i in range(0, len(icc), size)]
        if len(chunks) < 256:
            for n, c in enumerate(chunks, 1):
                payload = b"ICC_PROFILE\x00" + bytes([n, len(chunks)]) + c
                segs.append(b"\xff\xe2" + (len(payload) + 2).to_bytes(2, "big") + payload)
    return buf[:2] + b"".join(segs) + buf[2:] if segs and buf[:2] == b"\xff\xd8" else buf


def _splice_png(buf: bytes, meta: dict[str, bytes]) -> bytes:
    """iCCP and eXIf chunks inserted after IHDR (before any image data, as the PNG spec asks)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    if buf[:8] != b"\x89PNG\r\n\x1a\n" or buf[12:16] != b"IHDR":
        return buf
    end_ihdr = 8 + 8 + int.from_bytes(buf[8:12], "big") + 4
    extra = b""
    if meta.get("icc"):
        extra += chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta["icc"]))
    if meta.get("exif"):
        extra += chunk(b"eXIf", meta["exif"])
    return buf[:end_ihdr] + extra + buf[end_ihdr:]


def write_image(path: str | os.PathLike, img: np.ndarray, metadata: dict[str, bytes] | None = None) -> Path:
    """Encode ``img`` (OpenCV channel order) by the suffix of ``path`` and write it atomically;
    ``metadata`` (:func:`read_metadata`) is carried into JPEG and PNG files."""
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
    data = buf.tobytes()
    if metadata:
        if suffix in (".jpg", ".jpeg"):
            data = _splice_jpeg(data, metadata)
        elif suffix == ".png":
            data = _splice_png(data, metadata)
    try:
        return atomic_write(path, data)
    except OSError as e:  # read-only folder, full disk, ...: nothing half-written is left (atomic)
        raise ImageError(f"{path}: cannot write ({e.strerror or type(e).__name__})") from None
