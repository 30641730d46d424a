"""Command-line entry points (declared in setup.cfg).

Each command is a ``main(argv=None) -> int`` function in ``anyir_edge.cli.<command>``;
:func:`run` turns an :class:`~anyir_edge.errors.AnyIRError` (and Ctrl-C) into one line on
stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable

from ..errors import AnyIRError

EXIT_ERROR = 1


def run(prog: str, fn: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line  # warnings as one line each, like errors
        try:
            return int(fn(argv) or 0)
        except AnyIRError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130


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
