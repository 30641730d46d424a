"""Runtime errors: one-line messages (the command-line tools print them without a traceback).

Defined in :mod:`anyir_edge.errors` (the engine-file contract, :mod:`anyir_edge.artifact`,
raises them too); importable from here."""
from __future__ import annotations

from ..errors import EngineError, EngineWarning, ImageError, ImageWarning

__all__ = ["EngineError", "EngineWarning", "ImageError", "ImageWarning"]
