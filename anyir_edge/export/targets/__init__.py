"""The export targets: one module per target behind one interface (:class:`base.Target`).

Adding a target is adding a module here that defines ``TARGET`` (its format row, its own
command-line options, ``prepare`` and ``build``) and one line in :data:`REGISTRY`; the
pipeline (:func:`anyir_edge.export.export`: verify, gate, place), ``anyir-export``'s options
and format table, and ``anyir-bench`` (through the runtime backends' ``export_target``) pick
it up.  Modules are imported on first use.
"""
from __future__ import annotations

import importlib

from .base import SHARED_OPTIONS, Built, Context, OptionSpec, Target

#: target name -> module defining ``TARGET`` (relative to this package, or an absolute dotted name)
REGISTRY = {
    "onnx": "onnx",
    "openvino": "openvino",
    "trt": "tensorrt",
    "executorch": "executorch",
    "coreml": "coreml",
    "litert": "litert",
}


def get(name: str) -> Target:
    """The target registered as ``name`` (a canonical name: resolve aliases with
    :func:`anyir_edge.export.formats.resolve`)."""
    mod = REGISTRY[name]
    return importlib.import_module(mod if "." in mod else f"{__name__}.{mod}").TARGET


def all_targets() -> list[Target]:
    return [get(n) for n in REGISTRY]


def options() -> dict[str, OptionSpec]:
    """Every option a target takes, each once (shared ones first)."""
    out = dict(SHARED_OPTIONS)
    for t in all_targets():
        for name, spec in t.options.items():
            if name in out and out[name] is not spec:
                raise RuntimeError(f"export option {name!r} is declared by two targets: move it to SHARED_OPTIONS")
            out[name] = spec
    return out


__all__ = ["Built", "Context", "REGISTRY", "SHARED_OPTIONS", "Target", "all_targets", "get", "options"]
