"""The base class of every backend, and the facts about this host that backends need.

Every backend runs the network *without* padding: ``run(x)`` takes float32 NCHW RGB in
[0, 1] whose H and W are multiples of ``size_multiple`` and returns the same shape.
Calls are serialised with a per-backend lock (engines keep per-call state and one run
already uses all intra-op threads), which makes a backend safe to share between threads.
"""
from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from ... import artifact
from ...errors import EngineError, EngineWarning, first_line

META_PREFIX = artifact.PREFIX
# Peak activation bytes per input pixel per unit of model width (float32), for auto tiling.
# Measured on anyir-tiny at 224 and 512 (peak RSS increase / pixels / width): PyTorch eager
# 123-139, onnxruntime (arena on, patterns off) ~80.  Backends carry their own, with headroom.
BYTES_PER_PIXEL_PER_DIM = 150.0


# x86 flags that decide how INT8 engines compute (VNNI: exact u8 x s8 dot products; without it
# AVX2 / AVX-512 saturate pairs of products at 16 bits: anyir_edge.export.precision)
INT8_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info() -> dict:
    """This machine's CPU: model name and the INT8-relevant ISA flags it has (Linux /proc/cpuinfo)."""
    import platform

    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name") and model is None:
                    model = val.strip()
                elif key in ("flags", "Features") and flags is None:
                    flags = set(val.split())
    except OSError:
        pass
    flags = flags or set()
    return {"model": model or platform.processor() or platform.machine(), "int8_isa": [f for f in INT8_ISA_FLAGS if f in flags]}


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads counted once)."""
    try:
        avail = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        avail = os.cpu_count() or 1
    cores = None
    try:
        import psutil  # optional

        cores = psutil.cpu_count(logical=False)
    except Exception:
        try:
            pairs, phys = set(), "0"
            with open("/proc/cpuinfo") as f:
                for line in f:
                    key, _, val = line.partition(":")
                    key, val = key.strip(), val.strip()
                    if key == "physical id":
                        phys = val
                    elif key == "core id":
                        pairs.add((phys, val))
            cores = len(pairs) or None
        except OSError:
            cores = None
    return max(1, min(cores or avail, avail))


def missing_modules(modules) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (found without importing them)."""
    out = []
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except (ImportError, ValueError):
            out.append(m)
    return out


def check_signature(path, inputs: list[tuple], outputs: list[tuple], metadata: dict[str, str],
                    warn: bool = True) -> None:
    """Refuse an engine that cannot be an image restorer under the contract (one line), and warn
    once when it carries no anyir-edge metadata and runs on trust.

    ``inputs`` / ``outputs``: (name, element type, dims) with dims ints for fixed sizes and None
    for dynamic ones; element type "float32" or the runtime's own name for anything else.
    ``warn`` False: the checks only (an engine with several signatures warns once)."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise EngineError(f"{path}: not an image-restoration engine: expected 1 input and 1 output, found "
                          f"{len(inputs)} input(s) {[i[0] for i in inputs]} and {len(outputs)} output(s) "
                          f"{[o[0] for o in outputs]}")
    for role, (name, dtype, dims) in (("input", inputs[0]), ("output", outputs[0])):
        if dtype != "float32":
            raise EngineError(f"{path}: its {role} {name!r} is {dtype}, the runtime feeds and reads float32 images")
        if dims is not None and len(dims) != 4:
            raise EngineError(f"{path}: its {role} {name!r} has {len(dims)} dimensions, expected 4 (N, C, H, W)")
        if dims is not None and dims[1] not in (None, 3):
            raise EngineError(f"{path}: its {role} {name!r} has {dims[1]} channels, expected 3 (RGB)")
    dims = inputs[0][2]
    if dims is not None and (dims[2] is not None or dims[3] is not None):
        raise EngineError(f"{path}: its input has a fixed size ({'x'.join(str(d or '?') for d in dims)}); the "
                          "runtime pads images to the size multiple and needs dynamic H and W (anyir-export "
                          "writes them; re-export without --static)")
    if warn:
        warn_untrusted(path, metadata, stacklevel=5)


def warn_untrusted(path, metadata: dict[str, str], stacklevel: int = 4) -> None:
    """Warn when an engine carries no anyir-edge metadata and runs on trust."""
    if not any(k.startswith(artifact.PREFIX) for k in metadata):
        import warnings

        warnings.warn(f"{path}: no anyir-edge metadata: running it on trust (NCHW RGB in [0, 1], H and W padded to "
                      "multiples of 8); export with anyir-export to get a verified engine", EngineWarning,
                      stacklevel=stacklevel)


class Backend:
    """Base class: ``run`` one padded batch; metadata describes the model.

    A backend class describes itself to the registry (:mod:`anyir_edge.runtime.backends`):
    ``kind`` (its name), ``aliases``, ``suffixes`` (engine files it opens, by suffix),
    ``export_target`` (the ``anyir-export --to`` that writes them), ``requires`` (modules it
    imports) and ``install`` (how to get them); :meth:`is_available` says whether it can run
    here.  Its constructor, ``Backend(path, device=None, threads=None)``, opens an engine.
    """

    kind: ClassVar[str] = "base"
    aliases: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = ()
    export_target: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""
    bytes_per_pixel_per_dim = BYTES_PER_PIXEL_PER_DIM
    #: the largest padded H and W the engine takes (None: any); the Restorer tiles larger images
    max_side: int | None = None
    #: the only padded (H, W) the engine takes (None: any; LiteRT, ExecuTorch --sizes); the Restorer tiles others
    sizes: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def is_available(cls) -> str | None:
        """None when this backend can open engines here, else why not (one line)."""
        missing = missing_modules(cls.requires)
        if missing:
            return f"{', '.join(missing)} not installed ({cls.install})" if cls.install else \
                f"{', '.join(missing)} not installed"
        return None

    def __init__(self, path: str, metadata: dict[str, str]):
        self.path = path
        self.metadata = metadata
        self._lock = threading.Lock()
        cfg = metadata.get(artifact.CONFIG)
        self.config = json.loads(cfg) if cfg else {}
        self.name = metadata.get(artifact.NAME) or Path(str(path)).stem
        self.size_multiple = int(metadata.get(artifact.SIZE_MULTIPLE, 8))
        self.fft = metadata.get(artifact.FFT, "")
        self._check_int8_isa()

    def _check_int8_isa(self) -> None:
        """Warn when an INT8 CPU engine with full-range (8-bit) weights runs on an x86 CPU without
        VNNI, where u8 x s8 products saturate (anyir_edge.export.precision): its output can be far
        from what its certificate says (measured: 13 dB instead of 35 on AVX2)."""
        md = self.metadata
        if self.kind not in ("onnxruntime", "openvino") or md.get(artifact.PRECISION) != "int8":
            return
        if md.get(artifact.INT8_WEIGHT_BITS, "8") != "8":
            return
        isa = cpu_info()["int8_isa"]
        if "avx2" in isa and not set(VNNI_FLAGS) & set(isa):
            import warnings

            warnings.warn(f"{self.path}: INT8 engine with 8-bit weights on a CPU without VNNI ({', '.join(isa)}): "
                          "u8 x s8 products saturate and the output may be wrong; re-export it with this "
                          "version (7-bit weights): anyir-export --int8", EngineWarning, stacklevel=3)

    @property
    def bytes_per_pixel(self) -> float:
        return self.bytes_per_pixel_per_dim * float(self.config.get("dim", 32))

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run_each(self, x: np.ndarray, run_one, runtime: str) -> np.ndarray:
        """``x`` image by image through ``run_one`` ((1, C, H, W) -> array), for runtimes whose
        programs take batch 1, within the engine's size bound; a failure is one line naming ``runtime``."""
        h, w = x.shape[-2:]
        if self.max_side and max(h, w) > self.max_side:
            raise EngineError(f"{self.path}: built for H and W up to {self.max_side}, got {h}x{w} (the Restorer tiles "
                              "larger images; re-export with a larger --max-side to run them whole)")
        out = []
        for i in range(x.shape[0]):
            try:
                y = run_one(np.ascontiguousarray(x[i:i + 1]))
            except Exception as e:
                raise EngineError(f"{self.path}: {runtime} failed on a {h}x{w} input ({first_line(e)})") from None
            out.append(np.array(y, dtype=np.float32, copy=True).reshape(1, x.shape[1], h, w))
        return np.concatenate(out, axis=0)

    def _set_sizes(self, found, entries: str) -> None:
        """:attr:`sizes` from the (H, W) that the engine's fixed-size ``entries`` ("signature(s)",
        "method(s)") take, checked against the size multiple and the :data:`~anyir_edge.artifact.SIZES`
        the exporter wrote (call after ``Backend.__init__``)."""
        m = self.size_multiple
        odd = [f"{h}x{w}" for h, w in found if h % m or w % m]
        if odd:
            raise EngineError(f"{self.path}: {entries} for size(s) {', '.join(odd)}, not a multiple of its size "
                              f"multiple {m}")
        self.sizes = tuple(sorted(found))
        named = self.metadata.get(artifact.SIZES)
        if named is not None:
            try:
                listed = artifact.parse_sizes(named)
            except EngineError as e:
                raise EngineError(f"{self.path}: {e}") from None
            if sorted(set(listed)) != list(self.sizes):
                raise EngineError(f"{self.path}: its metadata name sizes {named} but its {entries} take "
                                  f"{artifact.format_sizes(self.sizes) or 'none'}: the file was altered after export")

    def _wrong_size(self, h: int, w: int) -> EngineError:
        """The error for an input an engine built for fixed sizes was not built for."""
        return EngineError(f"{self.path}: built for {artifact.format_sizes(self.sizes)} only, got {h}x{w} (the "
                           "Restorer tiles other sizes; re-export with --sizes including it to run it whole)")

    def describe(self) -> str:
        return f"{self.kind}"

    def close(self) -> None:
        pass


