"""Runtime errors: one-line messages (the command-line tools print them without a traceback)."""
from __future__ import annotations

from ..errors import AnyIRError


class ImageError(AnyIRError):
    """An input image the runtime cannot restore (bad dtype/shape, NaN, too large, unreadable)."""


class EngineError(AnyIRError):
    """An engine that cannot be opened or run (missing file, wrong backend, missing package)."""


class EngineWarning(UserWarning):
    """An engine that runs but may not give the output it was certified for on this machine."""
