"""Exceptions with one-line messages; the command-line tools print them without a traceback."""


class AnyIRError(Exception):
    """Base class: the message is one line a user can act on."""


class CheckpointError(AnyIRError):
    """A model file that cannot be loaded (missing, truncated, not a checkpoint, wrong model)."""


class NotImplementedYet(AnyIRError):
    """A command whose issue is not done yet."""
