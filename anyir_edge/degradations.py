"""Seeded, deterministic synthetic degradations for all-in-one restoration.

Conventions
-----------
Images are float32 ``HxWx3`` RGB arrays in ``[0, 1]``.  Every function returns
a new float32 array of the same shape clipped to ``[0, 1]``; invalid input
(not 3-D, not 3 channels, not floating point, non-finite) raises ``ValueError``.
All randomness comes from the ``rng`` argument (a ``numpy.random.Generator``,
an ``int`` seed, or ``None`` for a fresh non-reproducible generator), so the
same seed gives bit-identical output.  Any parameter left as ``None`` is
sampled from ``rng`` in the range listed below; one given as a pair ``[low, high]``
is drawn uniformly from ``rng`` within it (integer parameters truncated), so a training
config can set its own ranges (``params: {rain: {intensity: [0.12, 0.35]}}``).

Models (registry name: function)
--------------------------------
``noise``: :func:`gaussian_noise` -- additive white Gaussian noise,
    ``y = x + sigma/255 * N(0, 1)``.  ``sigma`` on the 0-255 scale; sampled
    from {15, 25, 50} (the PromptIR/AnyIR denoising protocol).
``rain``: :func:`rain` -- sparse random seeds (``density`` = fraction of
    pixels; sampled U(0.0002, 0.002), or a level name from ``RAIN_LEVELS``:
    light 0.001 / medium 0.003 / heavy 0.008) smeared by an anti-aliased line
    kernel of ``length`` px (int U[10, 40]) at ``angle`` degrees from vertical
    (U(-30, 30)), thickened to ``width`` px (int U[1, 2]) and scaled to
    ``intensity`` (U(0.3, 0.8)).  The achromatic streak layer is added:
    ``y = clip(x + streaks)`` with ``streaks >= 0``.  The sampled ranges give rainy
    BSD400 images of 16-32 dB PSNR (median 23.6), around the real sets' inputs (Rain100L
    25.5 dB, Rain12 28.8 dB); the first ranges (density up to 0.008, width up to 3,
    intensity 0.5-0.9: median 13 dB) taught the model to over-process light real rain.
``haze``: :func:`haze` -- atmospheric scattering ``I = J t + A (1 - t)``,
    ``t = exp(-beta d)``, ``d`` a smooth random depth map in [0, 1] (upsampled,
    blurred low-frequency noise mixed with a top-far vertical gradient).
    ``beta`` U(0.5, 2.5) (0 = no haze); ``airlight`` a scalar or RGB triple,
    sampled as U(0.8, 1.0) plus a per-channel tint U(-0.03, 0.03).
``lowlight``: :func:`low_light` -- ``y = exposure * x**gamma`` followed by
    Poisson-Gaussian sensor noise: ``Poisson(y / shot) * shot + N(0, read^2)``
    (shot-noise variance ``shot * y``).  ``exposure`` U(0.05, 0.3), ``gamma``
    U(1.5, 3), ``shot`` log-U(1e-4, 1e-2) (0 disables), ``read`` (std)
    U(0.001, 0.01).
``blur``: :func:`motion_blur` -- camera-shake blur with a random trajectory
    kernel (:func:`random_motion_kernel`: random walk with momentum,
    bilinearly rasterised, sum 1), odd ``size`` in {7, 9, ..., 21}, applied
    with ``cv2.filter2D`` and ``BORDER_REFLECT``.
``jpeg``: :func:`jpeg` -- JPEG encode/decode round trip through OpenCV at
    ``quality`` int U[10, 50] (explicit values may be 1..100).

Mixtures
--------
:func:`degrade` applies one or several degradations in the fixed physical
order ``ORDER`` = haze -> rain -> lowlight -> blur -> noise -> jpeg (scene
effects, then exposure, camera motion, sensor noise and finally compression),
whatever the order given (CDD-11 style mixtures such as ``"haze+rain"`` or
``"lowlight+haze+rain"``).  :func:`parse_spec` turns such a string into a list
of names, and :func:`noise_seed_for` derives a stable per-file seed for
reproducible evaluation sets.
"""
from __future__ import annotations

import difflib
import zlib
from typing import Callable, Iterable, Union

import cv2
import numpy as np

RngLike = Union[np.random.Generator, int, None]

RAIN_LEVELS = {"light": 0.001, "medium": 0.003, "heavy": 0.008}
ORDER = ("haze", "rain", "lowlight", "blur", "noise", "jpeg")

__all__ = [
    "DEGRADATIONS", "ORDER", "RAIN_LEVELS", "degrade", "gaussian_noise", "haze",
    "jpeg", "low_light", "motion_blur", "noise_seed_for", "parse_spec", "rain",
    "random_motion_kernel",
]


# ---------------------------------------------------------------- helpers
def _as_rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _check(img: np.ndarray) -> np.ndarray:
    """Validate an input image and return it as float32 (a view if possible)."""
    if not isinstance(img, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image must have shape HxWx3, got {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"image must be floating point in [0, 1], got dtype {img.dtype}")
    if not np.isfinite(img).all():
        raise ValueError("image contains NaN or infinite values")
    return img.astype(np.float32, copy=False)


def _finish(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def _param(value, sample: Callable[[], float], name: str, lo: float = 0.0,
           hi: float = np.inf, rng: np.random.Generator | None = None) -> float:
    """Return ``value`` (checked to lie in the domain [lo, hi]), a fresh sample of the default
    range (``value`` None), or a uniform sample of a given range (``value`` a pair [a, b] in the
    domain, drawn from ``rng``)."""
    if value is None:
        return float(sample())
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or rng is None:
            raise ValueError(f"{name} must be a number or a range [low, high], got {list(value)}")
        a, b = (_param(v, sample, name, lo, hi) for v in value)
        if a > b:
            raise ValueError(f"{name} range [{a}, {b}] is empty (low > high)")
        return float(rng.uniform(a, b))
    value = float(value)
    if not (np.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value}")
    return value


def _odd(value: float, name: str) -> int:
    k = int(round(value))
    if k < 1 or k % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer, got {value}")
    return k


def _filter(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(x, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT)


# ----------------------------------------------------------- degradations
def gaussian_noise(img: np.ndarray, rng: RngLike = None, sigma: float | None = None) -> np.ndarray:
    """Additive white Gaussian noise; ``sigma`` on the 0-255 scale (default: one of 15/25/50)."""
    x, rng = _check(img), _as_rng(rng)
    sigma = _param(sigma, lambda: rng.choice([15, 25, 50]), "sigma", rng=rng)
    return _finish(x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma / 255.0))


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """Anti-aliased line of ``length`` px at ``angle`` degrees from vertical, peak 1."""
    k = length | 1
    c, r = k // 2, (length - 1) / 2.0
    dx, dy = r * np.sin(np.deg2rad(angle)), r * np.cos(np.deg2rad(angle))
    canvas = np.zeros((k, k), np.uint8)
    p0, p1 = (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy)))
    cv2.line(canvas, p0, p1, 255, 1, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def rain(img: np.ndarray, rng: RngLike = None, density: float | str | None = None,
         length: int | None = None, angle: float | None = None, width: int | None = None,
         intensity: float | None = None) -> np.ndarray:
    """Add bright, near-vertical motion-blurred rain streaks (see module docstring for ranges)."""
    x, rng = _check(img), _as_rng(rng)
    if isinstance(density, str):
        if density not in RAIN_LEVELS:
            raise ValueError(f"unknown rain level {density!r}; valid: {', '.join(RAIN_LEVELS)}")
        density = RAIN_LEVELS[density]
    density = _param(density, lambda: rng.uniform(0.0002, 0.002), "density", 0.0, 1.0, rng=rng)
    length = int(_param(length, lambda: rng.integers(10, 41), "length", 1, 1000, rng=rng))
    angle = _param(angle, lambda: rng.uniform(-30.0, 30.0), "angle", -90.0, 90.0, rng=rng)
    width = int(_param(width, lambda: rng.integers(1, 3), "width", 1, 100, rng=rng))
    intensity = _param(intensity, lambda: rng.uniform(0.3, 0.8), "intensity", 0.0, 1.0, rng=rng)

    h, w = x.shape[:2]
    seeds = (rng.random((h, w)) < density) * rng.uniform(0.6, 1.0, (h, w))
    streaks = _filter(seeds.astype(np.float32), _line_kernel(length, angle))
    # filter2D uses an FFT for large kernels: drop its round-off (true values >= 0.6/255).
    streaks[streaks < 1e-3] = 0.0
    if width > 1:
        streaks = cv2.dilate(streaks, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    streaks = np.minimum(streaks, 1.0) * np.float32(intensity)
    return _finish(x + streaks[..., None])


def _depth_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random depth in [0, 1]: blurred upsampled noise + top-far gradient."""
    coarse = rng.random((int(rng.integers(3, 8)), int(rng.integers(3, 8)))).astype(np.float32)
    noise = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = cv2.GaussianBlur(noise, (0, 0), max(h, w) / 16.0)
    grad = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]
    mix = np.float32(rng.uniform(0.3, 0.7))
    d = mix * grad + (1 - mix) * (noise - noise.min()) / (np.ptp(noise) + 1e-6)
    return (d - d.min()) / (np.ptp(d) + 1e-6)


def haze(img: np.ndarray, rng: RngLike = None, beta: float | None = None,
         airlight: float | Iterable[float] | None = None) -> np.ndarray:
    """Atmospheric-scattering haze ``I = J t + A (1 - t)``, ``t = exp(-beta * depth)``."""
    x, rng = _check(img), _as_rng(rng)
    beta = _param(beta, lambda: rng.uniform(0.5, 2.5), "beta", rng=rng)
    if airlight is None:
        a = rng.uniform(0.8, 1.0) + rng.uniform(-0.03, 0.03, 3)
    else:
        a = np.broadcast_to(np.asarray(airlight, dtype=np.float64), (3,))
        if not (np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()):
            raise ValueError(f"airlight must be a value or RGB triple in [0, 1], got {airlight}")
    a = np.clip(a, 0.0, 1.0).astype(np.float32)
    t = np.exp(-np.float32(beta) * _depth_map(rng, *x.shape[:2]))[..., None]
    return _finish(x * t + a * (1 - t))


def low_light(img: np.ndarray, rng: RngLike = None, exposure: float | None = None,
              gamma: float | None = None, shot: float | None = None,
              read: float | None = None) -> np.ndarray:
    """Darken (``exposure * img**gamma``) and add Poisson-Gaussian sensor noise."""
    x, rng = _check(img), _as_rng(rng)
    exposure = _param(exposure, lambda: rng.uniform(0.05, 0.3), "exposure", 0.0, 1.0, rng=rng)
    gamma = _param(gamma, lambda: rng.uniform(1.5, 3.0), "gamma", 1e-3, rng=rng)
    shot = _param(shot, lambda: np.exp(rng.uniform(np.log(1e-4), np.log(1e-2))), "shot", rng=rng)
    read = _param(read, lambda: rng.uniform(0.001, 0.01), "read", rng=rng)
    y = np.power(np.clip(x, 0.0, 1.0), gamma) * exposure
    if shot > 0:
        y = rng.poisson(y / shot) * shot
    y = y + rng.standard_normal(x.shape) * read
    return _finish(y)


def random_motion_kernel(rng: RngLike = None, size: int | None = None) -> np.ndarray:
    """Random camera-shake kernel (odd ``size`` 7..21): momentum random walk, sum 1."""
    rng = _as_rng(rng)
    size = _odd(_param(size, lambda: 2 * rng.integers(3, 11) + 1, "size", 3, 255, rng=rng), "size")
    n, momentum = 4 * size, rng.uniform(0.6, 0.95)
    a = rng.uniform(0, 2 * np.pi)
    v = np.array([np.cos(a), np.sin(a)])
    pts = np.zeros((n, 2))
    for i in range(1, n):
        v = momentum * v + (1 - momentum) * rng.standard_normal(2)
        v /= np.linalg.norm(v) + 1e-12
        pts[i] = pts[i - 1] + v
    pts -= (pts.max(0) + pts.min(0)) / 2.0                       # centre the trajectory
    pts *= (size - 1) / 2.0 / max(np.abs(pts).max(), 1e-6) * rng.uniform(0.5, 1.0)
    pts += (size - 1) / 2.0
    k = np.zeros((size, size))
    i0 = np.minimum(np.floor(pts).astype(int), size - 2)
    f = pts - i0
    for dy in (0, 1):                                            # bilinear splatting (x, y)
        for dx in (0, 1):
            wgt = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
            np.add.at(k, (i0[:, 1] + dy, i0[:, 0] + dx), wgt)
    return (k / k.sum()).astype(np.float32)


def motion_blur(img: np.ndarray, rng: RngLike = None, kernel: np.ndarray | None = None,
                size: int | None = None) -> np.ndarray:
    """Blur with ``kernel`` (normalised to sum 1) or a fresh :func:`random_motion_kernel`."""
    x, rng = _check(img), _as_rng(rng)
    if kernel is None:
        kernel = random_motion_kernel(rng, size)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or not np.isfinite(kernel).all() or kernel.sum() <= 0:
        raise ValueError("kernel must be a finite 2-D array with a positive sum")
    return _finish(_filter(x, kernel / kernel.sum()))


def jpeg(img: np.ndarray, rng: RngLike = None, quality: int | None = None) -> np.ndarray:
    """JPEG round trip through OpenCV (RGB <-> BGR handled); ``quality`` 10..50 if sampled."""
    x, rng = _check(img), _as_rng(rng)
    quality = int(_param(quality, lambda: rng.integers(10, 51), "quality", 1, 100, rng=rng))
    bgr = cv2.cvtColor(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode JPEG")
    rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return _finish(rgb.astype(np.float32) / 255.0)


DEGRADATIONS: dict[str, Callable[..., np.ndarray]] = {
    "noise": gaussian_noise,
    "rain": rain,
    "haze": haze,
    "lowlight": low_light,
    "blur": motion_blur,
    "jpeg": jpeg,
}


# -------------------------------------------------------------- mixtures
def _validate_names(names: Iterable[str]) -> list[str]:
    names = [str(n).strip().lower() for n in names]
    if not names or any(not n for n in names):
        raise ValueError(f"empty degradation name; valid: {', '.join(DEGRADATIONS)}")
    for n in names:
        if n not in DEGRADATIONS:
            close = difflib.get_close_matches(n, list(DEGRADATIONS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown degradation {n!r}{hint}; valid: {', '.join(DEGRADATIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate degradation in {names}")
    return names


def parse_spec(spec: str) -> list[str]:
    """Parse ``"noise"`` or ``"haze+rain"`` into a list of registered names."""
    return _validate_names(spec.split("+"))


def degrade(img: np.ndarray, names: str | Iterable[str], rng: RngLike = None,
            params: dict[str, dict] | None = None) -> np.ndarray:
    """Apply one degradation or a mixture (spec string or list) in the fixed ``ORDER``.

    ``params`` optionally maps a name to keyword arguments for its function,
    e.g. ``{"noise": {"sigma": 25}}``; unspecified parameters are sampled.
    """
    names = parse_spec(names) if isinstance(names, str) else _validate_names(names)
    params = params or {}
    unused = set(params) - set(names)
    if unused:
        raise ValueError(f"params given for degradations not applied: {sorted(unused)}")
    rng = _as_rng(rng)
    out = _check(img)
    for name in sorted(names, key=ORDER.index):
        out = DEGRADATIONS[name](out, rng, **params.get(name, {}))
    return out


def noise_seed_for(name: str, base_seed: int) -> int:
    """Stable per-image seed (CRC32 of ``name`` seeded with ``base_seed``), in [0, 2**32)."""
    return zlib.crc32(str(name).encode("utf-8"), int(base_seed) & 0xFFFFFFFF)
