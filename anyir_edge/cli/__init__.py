"""Command-line entry points (declared in setup.cfg).

Each command is a ``main(argv=None) -> int`` function in ``anyir_edge.cli.<command>``;
:func:`run` turns an :class:`~anyir_edge.errors.AnyIRError` (and Ctrl-C) into one line on
stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

from ..errors import AnyIRError

EXIT_ERROR = 1
EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``prog: error: ... (see --help)``, exit 2) instead of a
    usage block: every command's bad-argument message looks like its other errors."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return v


def run(prog: str, fn: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings(), _sigterm_interrupts():
        warnings.showwarning = one_line  # warnings as one line each, like errors
        try:
            return int(fn(argv) or 0)
        except AnyIRError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130


class _sigterm_interrupts:
    """SIGTERM (a service manager, ``kill``, a CI timeout) ends a command like Ctrl-C does: as a
    KeyboardInterrupt, so every ``finally`` runs and no temporary file or folder is left.
    Only in the main thread (signal handlers cannot be set elsewhere)."""

    def __enter__(self):
        import signal
        import threading

        self.old = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum, frame):
                raise KeyboardInterrupt

            self.old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            import signal

            signal.signal(signal.SIGTERM, self.old)
        return False


def _lazy(module: str) -> Callable[[list[str] | None], int]:
    """``main`` of ``anyir_edge.cli.<module>``, imported on first call (keeps start-up fast)."""

    def main(argv: list[str] | None = None) -> int:
        import importlib

        return importlib.import_module(f"{__name__}.{module}").main(argv)

    return main


def _entry(prog: str, fn: Callable[[list[str] | None], int]) -> Callable[[], None]:
    def entry() -> None:
        sys.exit(run(prog, fn))

    return entry


export_main = _entry("anyir-export", _lazy("export"))
bench_main = _entry("anyir-bench", _lazy("bench"))
restore_main = _entry("anyir-restore", _lazy("restore"))
train_main = _entry("anyir-train", _lazy("train"))
eval_main = _entry("anyir-eval", _lazy("eval"))
