"""Calibration images for INT8 engines: one folder reader and one degradation recipe for every
target (ONNX Runtime static quantization, OpenVINO/NNCF, TensorRT's entropy calibrator).

A restoration network sees *degraded* images, so calibrating on clean photos would measure
the wrong activation ranges.  Every calibration image is therefore scaled to cover the
calibration crop, centre-cropped, and degraded once with each supported degradation of
:data:`anyir_edge.degradations.ORDER` (seeded per image and kind, so a calibration is
reproducible).  Without a folder (``--int8`` without ``--calib``) the shipped asset crops are
used, with a warning.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .formats import ExportError

CALIB_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CALIB_SIZE = 128           # ONNX / OpenVINO calibration crops are CALIB_SIZE x CALIB_SIZE (a multiple of 8)
CALIB_MAX_IMAGES = 16      # images read from the calibration folder (each degraded every way)


def calibration_files(folder) -> list[Path]:
    """Image files of ``folder`` (by suffix), in name order."""
    p = Path(folder)
    return sorted(f for f in p.iterdir() if f.suffix.lower() in CALIB_SUFFIXES and f.is_file())


def calib_problems(calib) -> list[str]:
    """What is wrong with ``calib`` as a calibration folder ([] when usable; None is usable:
    the built-in crops)."""
    if calib is None:
        return []
    p = Path(calib)
    if not str(calib).strip():
        return ["--calib: empty folder name"]
    if not p.exists():
        return [f"--calib {p}: no such folder"]
    if not p.is_dir():
        return [f"--calib {p}: not a folder"]
    if not os.access(p, os.R_OK | os.X_OK):
        return [f"--calib {p}: folder not readable"]
    files = calibration_files(p)
    if not files:
        return [f"--calib {p}: no images ({', '.join(CALIB_SUFFIXES)}) in the folder"]
    from ..errors import ImageError
    from ..runtime.io import read_image

    for f in files:  # one decodable image is enough to start; the others are checked as they are read
        try:
            read_image(f)
            return []
        except ImageError:
            pass
    return [f"--calib {p}: none of its {len(files)} image files can be decoded"]


def check_calib_folder(calib) -> Path:
    """``calib`` as a Path when it is a folder with at least one readable image; else a one-line ExportError."""
    problems = calib_problems(calib)
    if problems:
        raise ExportError(problems[0])
    return Path(calib)


def builtin_calibration_folder() -> Path:
    from .parity import ASSETS_DIR

    return ASSETS_DIR


def resolve_folder(calib, log: Callable[[str], None] | None = None, degradations=None) -> Path:
    """The folder to calibrate on: ``calib`` checked, or the built-in crops with a warning."""
    if calib is not None:
        return check_calib_folder(calib)
    from .. import degradations as D

    folder = builtin_calibration_folder()
    if log:
        log(f"warning: no --calib folder given; calibrating on the {len(calibration_files(folder))} built-in "
            f"asset crops ({folder.name}/), degraded {len(degradations or D.ORDER)} ways: give --calib DIR "
            "with images like the ones the engine will see")
    return folder


def _to_rgb01(img: np.ndarray) -> np.ndarray:
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    rgb = img[..., :3][..., ::-1].astype(np.float32) / np.float32(scale)  # OpenCV BGR -> RGB
    return np.clip(rgb, 0.0, 1.0)


def _cover_crop(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    ih, iw = rgb.shape[:2]
    s = max(h / ih, w / iw)
    nh, nw = max(h, int(round(ih * s))), max(w, int(round(iw * s)))
    if (nh, nw) != (ih, iw):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    return np.clip(rgb[y0:y0 + h, x0:x0 + w], 0.0, 1.0)


def clean_crops(folder, h: int, w: int, limit: int | None = None) -> Iterator[np.ndarray]:
    """(H, W, 3) float32 RGB [0, 1] crops of the images in ``folder`` (scaled to cover H x W,
    centre-cropped; name order; unreadable files skipped)."""
    from ..runtime.io import read_image

    files = calibration_files(folder)
    for f in files[:limit] if limit else files:
        try:
            yield _cover_crop(_to_rgb01(read_image(f)), h, w)
        except Exception:
            continue


def degraded_crops(folder, h: int, w: int, limit: int | None = None,
                   degradations=None) -> Iterator[np.ndarray]:
    """(3, H, W) float32 crops: each clean crop degraded once with every degradation
    (seeded by image index and kind)."""
    from .. import degradations as D

    degs = tuple(degradations or D.ORDER)
    for i, img in enumerate(clean_crops(folder, h, w, limit)):
        for d in degs:
            out = D.degrade(np.ascontiguousarray(img), d, rng=zlib.crc32(f"calib:{i}:{d}".encode()))
            yield np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def batched(samples: Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """(n, ...) batches of ``samples``; a last incomplete batch is filled with samples from the start."""
    batch, first = [], []
    for x in samples:
        if len(first) < n:
            first.append(x)
        batch.append(x)
        if len(batch) == n:
            yield np.stack(batch)
            batch = []
    if batch and first:
        i = 0
        while len(batch) < n:
            batch.append(first[i % len(first)])
            i += 1
        yield np.stack(batch)


def calibration_batches(folder, shape, limit: int | None = None, degradations=None) -> Iterator[np.ndarray]:
    """(N, 3, H, W) float32 batches of degraded crops at ``shape`` (TensorRT: the profile's opt shape)."""
    from .trt import parse_shape

    n, _, h, w = parse_shape(shape)
    return batched(degraded_crops(folder, h, w, limit, degradations), n)


def calibration_samples(calib=None, size: int | tuple[int, int] = CALIB_SIZE,
                        max_images: int | None = CALIB_MAX_IMAGES, degradations=None,
                        log: Callable[[str], None] | None = None) -> tuple[list[np.ndarray], dict]:
    """Calibration folder -> a list of (1, 3, H, W) degraded float32 samples (``size``: H = W, or
    (H, W)) and a description.  ``calib`` None: the shipped asset crops, with a warning."""
    from .. import degradations as D

    h, w = (size, size) if isinstance(size, int) else size
    folder = resolve_folder(calib, log, degradations)
    degs = tuple(degradations or D.ORDER)
    samples = [s[None] for s in degraded_crops(folder, h, w, max_images, degs)]
    if not samples:
        raise ExportError(f"--calib {folder}: none of its {len(calibration_files(folder))} image files could be decoded")
    desc = {"folder": str(folder) if calib is not None else f"built-in ({folder.name}/)",
            "images": len(samples) // len(degs), "degradations": list(degs), "samples": len(samples),
            "crop": [h, w]}
    return samples, desc
