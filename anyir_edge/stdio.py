"""Standard output and error silenced at the file-descriptor level.  Converters and runtimes
write more than Python's ``sys.stdout``/``sys.stderr`` sees: C++ code writes to descriptors 1
and 2 directly (TensorFlow's absl lines under litert-torch, ExecuTorch's cpuinfo and thread-pool
lines), and libraries log at import.  :func:`silenced` keeps all of it, with Python's warnings,
off the terminal, and lets the caller read what was written (to keep it when a step fails)."""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from typing import Callable, Iterator


def _flush() -> None:
    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):
            f.flush()


@contextlib.contextmanager
def silenced() -> Iterator[Callable[[], str]]:
    """Inside the block Python's warnings are ignored and whatever the process writes to standard
    output or error (prints, log records, C and C++ writes) goes to a temporary file; yields a
    function that returns what was written so far.  Both descriptors are restored on leaving."""
    text = io.StringIO()  # Python-level writes where sys.stdout/sys.stderr are not the descriptors (pytest)
    _flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as cap:

        def written() -> str:
            _flush()
            cap.seek(0)
            return cap.read().decode(errors="replace") + text.getvalue()

        try:
            os.dup2(cap.fileno(), 1)
            os.dup2(cap.fileno(), 2)
            with warnings.catch_warnings(), contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                warnings.simplefilter("ignore")
                yield written
        finally:
            _flush()
            for fd, dup in zip((1, 2), saved):
                os.dup2(dup, fd)
                os.close(dup)
