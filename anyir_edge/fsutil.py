"""Atomic file writes: a reader never sees a half-written output, and a failed write leaves
whatever was there before.  Every writer of the toolkit (images, models, certificates,
checkpoints, JSON reports) goes through :func:`atomic_path`."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once, at import: os.umask can only be read by setting it, and setting it while other
# threads create files (Restorer.restore is called from several threads) would race
_UMASK = _read_umask()


@contextmanager
def atomic_path(path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block
    succeeds (with the permissions a plain ``open`` would give, not mkstemp's 0600), removed
    when it raises.  ``suffix``: for writers that pick the format from the name (e.g. ``.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else bytes(data))
    return Path(path)


def write_json(path, obj, indent: int = 2, default=None) -> Path:
    """``obj`` as JSON (plus a final newline) written atomically to ``path``."""
    return atomic_write(path, json.dumps(obj, indent=indent, default=default) + "\n")
