"""Parity certificates: an engine's output against the PyTorch reference forward.

The inputs are the small real-photo crops shipped in ``anyir_edge/assets`` (one of them
251x333, an odd size that exercises the padding rule), each degraded with noise, rain and
haze by :func:`anyir_edge.degradations.degrade` with fixed seeds.  The reference is
``model.forward`` with ``fft_mode="fft"`` (torch.fft); the engine runs through
:class:`anyir_edge.runtime.Restorer.forward` (the runtime pads, the engine runs the
unpadded network, the runtime crops), untiled, outputs unclipped.

Metrics per input: PSNR (data range 1, on the raw outputs; identical outputs are reported
as :data:`PSNR_CAP` dB), SSIM (Gaussian window 11 / sigma 1.5, K1 0.01, K2 0.03, on outputs
clipped to [0, 1], mean over channels), max and mean absolute error.  The gate is the
*minimum* PSNR over all inputs.
"""
from __future__ import annotations

import platform
import time
import zlib
from pathlib import Path

import numpy as np

from .. import metrics
from ..fsutil import write_json  # noqa: F401  (export/__init__ writes certificates with it)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEGRADATIONS = ("noise", "rain", "haze")
PSNR_CAP = 200.0
DEFAULT_THRESHOLD_DB = 60.0


def asset_paths() -> list[Path]:
    return sorted(ASSETS_DIR.glob("*.png"))


def load_assets() -> list[tuple[str, np.ndarray]]:
    """The shipped test crops as (file name, float32 HxWx3 RGB in [0, 1])."""
    from ..runtime.io import read_image

    out = []
    for p in asset_paths():
        img = read_image(p)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        rgb = img[..., :3][..., ::-1].astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
        out.append((p.name, np.ascontiguousarray(rgb)))
    return out


def parity_inputs(max_side: int | None = None, limit: int | None = None) -> list[tuple[str, str, int, np.ndarray]]:
    """(asset name, degradation, seed, degraded float32 HxWx3) for every asset x degradation."""
    from ..degradations import degrade

    items = []
    for name, rgb in load_assets():
        if max_side is not None and max(rgb.shape[:2]) > max_side:
            continue
        for deg in DEGRADATIONS:
            seed = zlib.crc32(f"{name}:{deg}".encode())
            items.append((name, deg, seed, degrade(rgb, deg, rng=seed)))
    if not items:
        raise FileNotFoundError(f"no test assets found in {ASSETS_DIR}")
    return items[:limit] if limit else items


# ----------------------------------------------------------------- metrics
def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR of raw float outputs (data range 1), capped at :data:`PSNR_CAP` for identical outputs;
    0 dB when either output is not finite (NaN / inf, e.g. an FP16 overflow: never a pass)."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    return float(min(PSNR_CAP, metrics.psnr(a, b, data_range)))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    return metrics.ssim(a, b, data_range)


def compare(out: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    return {
        "psnr": round(psnr(out, ref), 3),
        "ssim": round(ssim(np.clip(out, 0, 1), np.clip(ref, 0, 1)), 6),
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
    }


# ----------------------------------------------------------- certificates
def certify(restorer, model, inputs=None, threshold: float = DEFAULT_THRESHOLD_DB, **info) -> dict:
    """Compare ``restorer`` (a :class:`~anyir_edge.runtime.Restorer`) with ``model``'s
    reference forward (``fft_mode="fft"``) on ``inputs`` (default :func:`parity_inputs`)."""
    import copy

    import torch

    ref_model = model if model.fft_mode == "fft" else copy.deepcopy(model).set_fft_mode("fft")
    ref_model.eval()
    rows = []
    for name, deg, seed, img in inputs if inputs is not None else parity_inputs():
        x = np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32)
        with torch.inference_mode():
            ref = ref_model(torch.from_numpy(x)).numpy()[0].transpose(1, 2, 0)
        out = restorer.forward(x)[0].transpose(1, 2, 0)
        rows.append({"image": name, "degradation": deg, "seed": int(seed), "size": [int(img.shape[0]), int(img.shape[1])],
                     **compare(out, ref)})
    summary = {
        "psnr_min": min(r["psnr"] for r in rows),
        "psnr_mean": round(float(np.mean([r["psnr"] for r in rows])), 3),
        "ssim_min": min(r["ssim"] for r in rows),
        "max_abs_error": max(r["max_abs_error"] for r in rows),
        "mean_abs_error": float(np.mean([r["mean_abs_error"] for r in rows])),
    }
    return {
        "certificate": "anyir-edge parity",
        "passed": bool(summary["psnr_min"] >= threshold),
        "threshold_db": float(threshold),
        "gate": "min PSNR over all inputs >= threshold_db (fp32)",
        **model_identity(model),
        "precision": "fp32",
        "reference": f"PyTorch {type(model).__name__}.forward, fft_mode='fft' (torch.fft), float32, CPU",
        "engine_backend": restorer.backend.describe(),
        "tiling": "none (whole image; the runtime pads to the size multiple)",
        "metrics": "psnr: data range 1, raw outputs, capped at %g dB; ssim: Gaussian 11x11 sigma 1.5, "
                   "outputs clipped to [0, 1]; errors: absolute, raw outputs" % PSNR_CAP,
        "summary": summary,
        "inputs": rows,
        **environment(),
        **info,
    }


def model_identity(model) -> dict:
    """The fields naming the model a certificate is about (every certificate has them)."""
    from ..models.checkpoint import weights_sha256

    return {
        "model": getattr(model, "name", None) or type(model).arch,
        "arch": type(model).arch,
        "weights_sha256": weights_sha256(model),
        "config": model.config.to_dict(),
    }


def environment() -> dict:
    """The fields naming where a certificate was made: toolkit and library versions, CPU, time."""
    from .. import __version__
    from ..runtime.backends import cpu_info

    return {
        "toolkit_version": __version__,
        "versions": _versions(),
        "host_cpu": cpu_info(),  # INT8 numerics depend on it (VNNI or not): anyir_edge.export.precision
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("torch", "numpy", "onnx", "onnxruntime", "openvino"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:
            pass
    return out
