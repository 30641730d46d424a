"""Command-line entry points (declared in setup.cfg).

Each command is a ``main(argv=None) -> int`` function; :func:`run` turns an
:class:`~anyir_edge.errors.AnyIRError` (and Ctrl-C) into one line on stderr and a non-zero
exit code, never a traceback.  Commands whose issue is not done yet exit 2 and say so.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..errors import AnyIRError

EXIT_ERROR = 1
EXIT_USAGE = 2


def run(prog: str, fn: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    try:
        return int(fn(argv) or 0)
    except AnyIRError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _pending(prog: str, issue: int, summary: str) -> Callable[[list[str] | None], int]:
    def main(argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=prog, description=f"{summary} (not implemented yet: issue #{issue})")
        parser.parse_known_args(argv)
        print(f"{prog}: not implemented yet (tracked in issue #{issue})", file=sys.stderr)
        return EXIT_USAGE

    main.pending_issue = issue  # type: ignore[attr-defined]
    return main


def _entry(prog: str, fn: Callable[[list[str] | None], int]) -> Callable[[], None]:
    def entry() -> None:
        sys.exit(run(prog, fn))

    entry.pending_issue = getattr(fn, "pending_issue", None)  # type: ignore[attr-defined]
    return entry


export_main = _entry("anyir-export", lambda argv=None: __import__("anyir_edge.cli.export", fromlist=["main"]).main(argv))
bench_main = _entry("anyir-bench", _pending("anyir-bench", 5, "Benchmark engines: latency, memory, parity"))
restore_main = _entry("anyir-restore", lambda argv=None: __import__("anyir_edge.cli.restore", fromlist=["main"]).main(argv))
from .train import main as _train  # noqa: E402

train_main = _entry("anyir-train", _train)
from .eval import main as _eval  # noqa: E402

eval_main = _entry("anyir-eval", _eval)
