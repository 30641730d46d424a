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


def _bounded(cast, ok, need: str):
    """An argparse type: ``cast`` the text (int or float) and require ``ok(value)`` ("must be ``need``")."""
    what = "a whole number" if cast is int else "a number"

    def parse(text: str):
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {need}, got {text}")
        return v

    parse.__name__ = f"{cast.__name__} {need}"
    return parse


positive_int = _bounded(int, lambda v: v >= 1, ">= 1")
non_negative_int = _bounded(int, lambda v: v >= 0, ">= 0")
positive_float = _bounded(float, lambda v: 0 < v < float("inf"), "> 0 and finite")


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
