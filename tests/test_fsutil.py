"""Atomic writes: the one helper every output of the toolkit goes through."""
import stat

import pytest

from anyir_edge.fsutil import atomic_path, atomic_write, write_json


def test_atomic_write_permissions_and_no_leftovers(tmp_path, monkeypatch):
    from anyir_edge import fsutil

    monkeypatch.setattr(fsutil, "_UMASK", 0o022)  # the umask read at import
    p = atomic_write(tmp_path / "sub" / "a.json", "x")
    assert p.read_text() == "x"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644  # not mkstemp's 0600: outputs are meant to be shared
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert p.read_bytes() == b"good" and sorted(f.name for f in tmp_path.iterdir()) == ["model.onnx"]


def test_write_json_and_suffix(tmp_path):
    p = write_json(tmp_path / "r.json", {"a": float("inf")}, default=str)
    assert p.read_text().endswith("\n") and '"a": Infinity' in p.read_text()
    with atomic_path(tmp_path / "plot.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(".plot.png.")
        tmp.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"
