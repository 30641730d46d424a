"""The backend registry: one module per runtime, and the one place that lists them.

``Restorer.open``, ``anyir-restore --backend``, ``anyir-bench`` and the exporter's verification
all read :data:`REGISTRY`.  Adding a backend is adding a module here that defines ``BACKEND``
(a :class:`~anyir_edge.runtime.backends.base.Backend` subclass describing itself) and one line
below.  Modules are imported only when their backend is asked for, so opening an ONNX engine
never imports OpenVINO, TensorRT or torch.
"""
from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from ...errors import EngineError
from .base import Backend, cpu_info, missing_modules, physical_cores

#: backend name -> module defining ``BACKEND`` (relative to this package, or an absolute dotted name)
REGISTRY = {
    "torch": "torch_backend",
    "onnxruntime": "onnxruntime_backend",
    "openvino": "openvino_backend",
    "tensorrt": "tensorrt_backend",
    "executorch": "executorch_backend",
    "coreml": "coreml_backend",
    "litert": "litert_backend",
}
#: where a path's suffix gives no backend (a shipped model name), this one opens it
DEFAULT = "torch"


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> type[Backend]:
    """The backend class registered as ``name`` (aliases accepted)."""
    mod = REGISTRY[canonical(name)]
    return importlib.import_module(mod if "." in mod else f"{__name__}.{mod}").BACKEND


def classes() -> dict[str, type[Backend]]:
    return {n: get(n) for n in REGISTRY}


def canonical(name: str) -> str:
    """A backend name or alias -> the registered name; a one-line EngineError for anything else."""
    key = str(name).lower()
    if key in REGISTRY:
        return key
    for n, cls in classes().items():
        if key in cls.aliases:
            return n
    known = names() + [a for c in classes().values() for a in c.aliases]
    near = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise EngineError(f"unknown backend {name!r} (known: {', '.join(names())}){hint}")


def choices() -> list[str]:
    """Every name and alias, for command-line choices."""
    return names() + [a for c in classes().values() for a in c.aliases]


def is_available(name: str) -> str | None:
    """None when backend ``name`` can run here, else why not (one line)."""
    return get(name).is_available()


def backend_for(path_or_name: str, backend: str | None = None) -> str:
    """The backend name: ``backend`` (or an alias), else the one whose suffixes take the path."""
    if backend:
        return canonical(backend)
    suffix = Path(str(path_or_name)).suffix.lower()
    for n, cls in classes().items():
        if n != DEFAULT and suffix in cls.suffixes:
            return n
    return DEFAULT


def check_suffix(path_or_name: str, backend: str) -> None:
    """Refuse a file the backend cannot open, saying which export makes one it can."""
    suffix = Path(str(path_or_name)).suffix.lower()
    cls = get(backend)
    engine_suffixes = {s for n, c in classes().items() if n != DEFAULT for s in c.suffixes}
    if backend == DEFAULT:
        if suffix in engine_suffixes:
            raise EngineError(f"{path_or_name}: the torch backend needs a checkpoint (.safetensors/.pth) or a model "
                              "name")
        return
    if suffix not in cls.suffixes:
        raise EngineError(f"{path_or_name}: the {backend} backend needs a {cls.suffixes[0]} file; export one with: "
                          f"anyir-export --to {cls.export_target} --model ...")


def open_backend(path_or_name: str, backend: str | None = None, device: str | None = None,
                 threads: int | None = None) -> Backend:
    """Open an engine (or checkpoint / model name) with the backend its suffix or ``backend`` names."""
    kind = backend_for(path_or_name, backend)
    check_suffix(path_or_name, kind)
    engine = get(kind)(str(path_or_name), device=device, threads=threads)
    if kind != DEFAULT:  # an engine file: does the certificate beside it describe it?
        from ... import artifact

        why = artifact.certificate_mismatch(path_or_name)
        if why:
            import warnings

            from ...errors import EngineWarning

            warnings.warn(f"{path_or_name}: {why}", EngineWarning, stacklevel=3)
    return engine


__all__ = ["Backend", "DEFAULT", "REGISTRY", "backend_for", "canonical", "check_suffix", "choices", "classes",
           "cpu_info", "get", "is_available", "missing_modules", "names", "open_backend", "physical_cores"]
