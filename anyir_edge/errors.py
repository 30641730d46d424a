"""Exceptions with one-line messages; the command-line tools print them without a traceback."""


class AnyIRError(Exception):
    """Base class: the message is one line a user can act on."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` characters."""
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:limit]


class CheckpointError(AnyIRError):
    """A model file that cannot be loaded (missing, truncated, not a checkpoint, wrong model)."""


class ImageError(AnyIRError):
    """An input image the runtime cannot restore (bad dtype/shape, NaN, too large, unreadable)."""


class EngineError(AnyIRError):
    """An engine that cannot be opened or run (missing file, wrong backend, missing package)."""


class EngineWarning(UserWarning):
    """An engine that runs but may not give the output it was certified for on this machine."""


class ImageWarning(UserWarning):
    """An input image that is restored, but probably not as the caller meant (e.g. 0..255 floats)."""


class NotImplementedYet(AnyIRError):
    """A command whose issue is not done yet."""
