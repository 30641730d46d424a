"""anyir-edge: AnyIR all-in-one image restoration, from a PyTorch reference to edge engines."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import AnyIRError, CheckpointError  # noqa: E402
from .models import create, list_models  # noqa: E402
from .models.checkpoint import load_model, save_model, shipped_weights  # noqa: E402

__all__ = [
    "AnyIRError",
    "CheckpointError",
    "__version__",
    "create",
    "list_models",
    "load_model",
    "save_model",
    "shipped_weights",
]
