"""The Python runtime: one :class:`Restorer` interface over PyTorch, onnxruntime and OpenVINO.

>>> from anyir_edge.runtime import Restorer
>>> r = Restorer.open("anyir-tiny.onnx")           # backend from the suffix
>>> out = r.restore(img)                            # HxWx3 uint8/uint16/float32 RGB -> same

``restore`` accepts HxWx3 (RGB, or BGR with ``bgr=True``), gray HxW / HxWx1 and RGBA
(alpha passed through untouched) arrays of dtype uint8, uint16 or float (values in [0, 1])
and returns the same dtype and shape.  Padding to the engine's size multiple is done here,
with exactly the model's rule (:func:`anyir_edge.runtime.image.pad_to_multiple`); engines that
pad themselves (the default export) declare a size multiple of 1 and are not padded again.  Large images are cut into overlapping tiles blended with
a raised-cosine window; the tile size is chosen from a memory budget unless given.
A Restorer may be shared between threads.
"""
from __future__ import annotations

import os

import numpy as np

from . import backends
from .backends import Backend, physical_cores
from .errors import EngineError, EngineWarning, ImageError
from .image import auto_tile, blend_tiles, finish, pad_to_multiple, prepare, tile_starts

DEFAULT_OVERLAP = 32
DEFAULT_MEMORY_LIMIT = int(float(os.environ.get("ANYIR_MEMORY_LIMIT_MB", "1024")) * 2**20)

__all__ = [
    "Backend", "EngineError", "EngineWarning", "ImageError", "OnnxRuntimeBackend", "OpenVINOBackend", "Restorer",
    "TorchBackend", "backends", "pad_to_multiple", "physical_cores",
]
_BACKEND_CLASSES = {"TorchBackend": "torch", "OnnxRuntimeBackend": "onnxruntime", "OpenVINOBackend": "openvino",
                    "TensorRTBackend": "tensorrt"}


def __getattr__(name: str):
    """The backend classes by their class names, imported on first use (see :mod:`.backends`)."""
    if name in _BACKEND_CLASSES:
        return backends.get(_BACKEND_CLASSES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Restorer:
    """Restore images with one engine.

    ``tile``: None = automatic (tile only when the image's activations would exceed
    ``memory_limit`` bytes), 0 = never tile (an image over the limit is refused), N = tiles
    of N x N pixels (rounded up to the size multiple).  ``overlap``: pixels shared by
    neighbouring tiles, blended with a raised-cosine ramp.
    """

    def __init__(self, backend: Backend, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                 memory_limit: int | None = None):
        self.backend = backend
        self.tile, self.overlap = check_tiling(tile, overlap)
        if memory_limit is not None and (isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, float))
                                         or not memory_limit > 0):
            raise ImageError(f"memory_limit must be a positive number of bytes, got {memory_limit!r}")
        self.memory_limit = int(memory_limit or DEFAULT_MEMORY_LIMIT)

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path_or_name, backend: str | None = None, device: str | None = None,
             threads: int | None = None, **kwargs) -> "Restorer":
        """Open a model with the backend its suffix names (:mod:`.backends`: ``.onnx`` ->
        onnxruntime, ``.xml`` -> OpenVINO, ``.engine`` -> TensorRT, a checkpoint or a shipped model
        name -> PyTorch); ``backend`` overrides.  ``kwargs`` go to the constructor (tile, overlap,
        memory_limit)."""
        if not isinstance(path_or_name, (str, os.PathLike)):  # an in-memory model: the torch backend checks it
            if backend is not None and backends.canonical(backend) != "torch":
                raise EngineError("an in-memory model runs on the torch backend only")
            return cls(backends.get("torch")(path_or_name, device=device, threads=threads), **kwargs)
        eng = backends.open_backend(str(path_or_name), backend, device=device, threads=threads)
        return cls(eng, **kwargs)

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def size_multiple(self) -> int:
        return self.backend.size_multiple

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.backend.metadata)

    def describe(self) -> str:
        return f"{self.name} on {self.backend.describe()}"

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---------------------------------------------------------------- running
    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 of any H, W >= 1 -> same shape, unclipped (pad, run, crop)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ImageError(f"expected a (B, 3, H, W) array, got shape {x.shape}")
        h, w = x.shape[-2:]
        if h < 1 or w < 1:
            raise ImageError(f"zero-size image ({h}x{w})")
        y = self.backend.run(pad_to_multiple(x.astype(np.float32, copy=False), self.size_multiple))
        return y[..., :h, :w]

    def estimate_bytes(self, h: int, w: int) -> int:
        """Estimated peak activation memory of one whole-image run at H x W."""
        m = self.size_multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        return int(self.backend.bytes_per_pixel * ph * pw)

    def plan_tile(self, h: int, w: int, tile: int | None = None, overlap: int | None = None) -> tuple[int, int]:
        """(tile, overlap) for an H x W image; tile 0 means one whole-image run."""
        tile, overlap = check_tiling(self.tile if tile is None else tile, self.overlap if overlap is None else overlap)
        if self.backend.sizes:
            return self._plan_fixed(h, w, tile, overlap)
        m = self.size_multiple
        bound = self.backend.max_side  # an engine built for H, W <= bound (ExecuTorch)
        ph, pw = -(-h // m) * m, -(-w // m) * m
        if bound and tile and tile > bound:
            raise ImageError(f"tile {tile} is larger than the {bound} pixels this engine was built for; use "
                             f"--tile {bound} or less")
        if tile is None:
            if self.estimate_bytes(h, w) <= self.memory_limit and not (bound and max(ph, pw) > bound):
                return 0, overlap
            tile = auto_tile(h * w, self.backend.bytes_per_pixel, self.memory_limit, m, overlap)
            if bound and tile > bound // m * m:  # the engine's bound decides; a small one takes a smaller overlap
                tile = bound // m * m
                overlap = min(overlap, tile // 4)
        elif tile == 0:
            if bound and max(ph, pw) > bound:
                raise ImageError(f"image {w}x{h} is larger than the {bound} pixels this engine was built for and "
                                 "tiling is off; allow tiling (--tile N) or re-export with a larger --max-side")
            need = self.estimate_bytes(h, w)
            if need > self.memory_limit:
                raise ImageError(
                    f"image too large for the memory limit without tiling ({w}x{h} needs ~{need / 2**20:.0f} MB, "
                    f"limit {self.memory_limit / 2**20:.0f} MB); allow tiling (--tile N) or raise the limit")
            return 0, overlap
        tile = -(-int(tile) // m) * m
        if overlap * 2 >= tile:
            raise ImageError(f"overlap {overlap} must be less than half the tile size {tile}")
        if h <= tile and w <= tile:
            return 0, overlap
        return tile, overlap

    def _plan_fixed(self, h: int, w: int, tile: int | None, overlap: int) -> tuple[int, int]:
        """(tile, overlap) on an engine built for fixed sizes (LiteRT): whole when the image pads
        to one of them, else tiles of a square one (every tile then pads to exactly that size)."""
        m, sizes = self.size_multiple, self.backend.sizes
        ph, pw = -(-h // m) * m, -(-w // m) * m
        listed = ", ".join(f"{a}x{b}" for a, b in sizes)
        if (ph, pw) in sizes and (not tile or (h <= tile and w <= tile)):
            return 0, overlap
        squares = [a for a, b in sizes if a == b]
        if tile == 0:
            raise ImageError(f"image {w}x{h} does not pad to a size this engine was built for ({listed}) and tiling "
                             "is off; allow tiling or re-export with --sizes including it")
        if tile is None:
            fits = [s for s in squares if s <= min(ph, pw)]
            if not fits:
                raise ImageError(f"image {w}x{h} does not pad to a size this engine was built for ({listed}) and is "
                                 "smaller than its square sizes, so it cannot be tiled either; re-export with "
                                 f"--sizes {ph}x{pw}")
            tile = max(fits)
            overlap = min(overlap, tile // 4)
        else:
            tile = -(-int(tile) // m) * m
            if tile not in squares or tile > min(ph, pw):
                usable = [s for s in squares if s <= min(ph, pw)]
                raise ImageError(f"tile {tile}: this engine runs only {listed}; for a {w}x{h} image the tile must be "
                                 f"one of its square sizes no larger than the image ({', '.join(map(str, usable)) or 'none'})")
        if overlap * 2 >= tile:
            raise ImageError(f"overlap {overlap} must be less than half the tile size {tile}")
        return tile, overlap

    def restore(self, image: np.ndarray, bgr: bool = False, tile: int | None = None,
                overlap: int | None = None) -> np.ndarray:
        """Restore one image; returns the same dtype and shape (see the module docstring)."""
        p = prepare(image, bgr=bgr)
        h, w = p.rgb.shape[1:]
        t, ov = self.plan_tile(h, w, tile, overlap)
        if t == 0:
            out = self.forward(p.rgb[None])[0]
        else:
            out = self._tiled(p.rgb, t, ov)
        return finish(p, out)

    def _tiled(self, rgb: np.ndarray, tile: int, overlap: int) -> np.ndarray:
        _, h, w = rgb.shape
        th, tw = min(tile, h), min(tile, w)
        tiles = [(y0, x0, th, tw) for y0 in tile_starts(h, tile, overlap) for x0 in tile_starts(w, tile, overlap)]
        return blend_tiles(rgb[None], tiles, overlap, self.forward)[0]


def check_tiling(tile, overlap) -> tuple[int | None, int]:
    """``tile`` (None, 0 or a positive size) and ``overlap`` (>= 0) as ints, or a one-line
    ImageError: the constructor and every per-call value go through here, so no argument can
    leave a region of the output unwritten."""
    def whole(v) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, np.integer))

    if tile is not None and (not whole(tile) or tile < 0):
        raise ImageError(f"tile must be None (automatic), 0 (never tile) or a positive number of pixels, got {tile!r}")
    if not whole(overlap) or overlap < 0:
        raise ImageError(f"overlap must be a whole number of pixels >= 0, got {overlap!r}")
    if tile and overlap * 2 >= tile:
        raise ImageError(f"overlap {overlap} must be less than half the tile size {tile}")
    return (None if tile is None else int(tile)), int(overlap)


def open(path_or_name, **kwargs) -> Restorer:  # noqa: A001 - mirrors Restorer.open
    return Restorer.open(path_or_name, **kwargs)
