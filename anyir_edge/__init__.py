"""anyir-edge: AnyIR all-in-one image restoration, from a PyTorch reference to edge engines.

The model API (``create``, ``load_model``, ...) is imported on first use, so an app that only
runs exported engines (``anyir_edge.runtime`` with ONNX Runtime or OpenVINO) never imports
torch: it starts faster and ~250 MB smaller.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: the model the commands use when none is given: the best trained weights shipped, the
#: authors' layout (issue #18; docs/model-card.md).  anyir-paper-tiny, our paper reading and
#: its teacher, stays shipped as a named variant.
DEFAULT_MODEL = "anyir-tiny"

from .errors import AnyIRError, CheckpointError  # noqa: E402

_LAZY = {
    "create": ".models",
    "list_models": ".models",
    "load_model": ".models.checkpoint",
    "save_model": ".models.checkpoint",
    "shipped_weights": ".models.checkpoint",
    "weights_sha256": ".models.checkpoint",
}

__all__ = ["AnyIRError", "CheckpointError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
