"""``anyir-restore``: inputs, outputs, formats and the bad-input corpus (one line per failure,
no output file for a failed input, exit 1 when anything failed)."""
import shutil

import cv2
import numpy as np
import pytest
from conftest import perturbed

import anyir_edge
from anyir_edge.cli import restore as cli_restore
from anyir_edge.cli import run
from anyir_edge.export.parity import ASSETS_DIR


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = perturbed()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    anyir_edge.save_model(m.eval(), path)
    return path


def restore(argv, capsys):
    rc = run("anyir-restore", cli_restore.main, [str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, [line for line in cap.err.splitlines() if line.strip()]


@pytest.fixture
def corpus(tmp_path):
    """The issue's bad-input corpus plus a good image."""
    d = tmp_path / "in"
    d.mkdir()
    good = cv2.imread(str(next(ASSETS_DIR.glob("fallenleaf*.png"))), cv2.IMREAD_UNCHANGED)[:40, :48]
    cv2.imwrite(str(d / "good.png"), good)
    data = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "text.jpg").write_text("this is not a JPEG\n")
    cv2.imwrite(str(d / "deep16.png"), good.astype(np.uint16) * 257 + 3)
    alpha = np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))
    cv2.imwrite(str(d / "rgba.png"), np.concatenate([good, alpha[..., None]], axis=2))
    cv2.imwrite(str(d / "one.png"), good[:1, :1])
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(good, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "photo.jpg"), good)
    return d


def test_bad_input_corpus(corpus, ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = restore([corpus, "-o", out, "--model", ckpt, "-q"], capsys)
    assert rc == 1
    failures = [e for e in err if e.startswith("anyir-restore: error: ")]
    assert len(failures) == 3 and err[-1] == "anyir-restore: 3 of 9 input(s) failed"
    by_name = {name: [f for f in failures if name in f] for name in ("truncated.png", "empty.png", "text.jpg")}
    assert all(len(v) == 1 for v in by_name.values()), failures
    assert "empty file" in by_name["empty.png"][0]
    assert "truncated or corrupt" in by_name["truncated.png"][0]
    assert "cannot decode" in by_name["text.jpg"][0]
    # the failures wrote nothing, the rest all restored, no temporary files
    assert sorted(p.name for p in out.iterdir()) == ["deep16.png", "good.png", "gray.png", "one.png",
                                                     "photo.jpg", "rgba.png"]
    assert "restored 6 of 9 image(s)" in stdout


def test_formats_kept(corpus, ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    files = [corpus / n for n in ("deep16.png", "rgba.png", "one.png", "gray.png", "photo.jpg")]
    rc, _, err = restore([*files, "-o", out, "--model", ckpt, "-q"], capsys)
    assert rc == 0 and err == []
    for f in files:
        a = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(out / f.name), cv2.IMREAD_UNCHANGED)
        assert a.dtype == b.dtype and a.shape == b.shape, f.name
    assert cv2.imread(str(out / "deep16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    rgba_in = cv2.imread(str(corpus / "rgba.png"), cv2.IMREAD_UNCHANGED)
    rgba_out = cv2.imread(str(out / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(rgba_in[..., 3], rgba_out[..., 3])
    assert not np.array_equal(rgba_in[..., :3], rgba_out[..., :3])  # it was restored


def test_ext_changes_format(corpus, ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = restore([corpus / "deep16.png", corpus / "rgba.png", "-o", out, "--ext", "jpg",
                          "--model", ckpt, "-q"], capsys)
    assert rc == 0, err
    a = cv2.imread(str(out / "deep16.jpg"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(out / "rgba.jpg"), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint8 and a.shape == (40, 48, 3) and b.shape == (40, 48, 3)


def test_never_overwrites_an_input(corpus, ckpt, capsys):
    before = (corpus / "good.png").read_bytes()
    rc, _, err = restore([corpus / "good.png", "-o", corpus, "--model", ckpt, "-q"], capsys)
    assert rc == 1 and len(err) == 2 and "would overwrite an input" in err[0]
    assert (corpus / "good.png").read_bytes() == before


def test_single_file_output_and_glob(corpus, ckpt, tmp_path, capsys):
    rc, _, err = restore([corpus / "good.png", "-o", tmp_path / "x" / "restored.png", "--model", ckpt, "-q"], capsys)
    assert rc == 0 and (tmp_path / "x" / "restored.png").is_file()
    rc, _, err = restore([str(corpus / "g*.png"), "-o", tmp_path / "g", "--model", ckpt, "-q"], capsys)
    assert rc == 0 and sorted(p.name for p in (tmp_path / "g").iterdir()) == ["good.png", "gray.png"]
    rc, _, err = restore([str(corpus / "nothing*.png"), tmp_path / "missing.png", "-o", tmp_path / "n",
                          "--model", ckpt, "-q"], capsys)
    assert rc == 1 and len(err) == 3 and "no file matches" in err[0] and "no such file" in err[1]


def test_onnx_engine_and_tiling_options(corpus, ckpt, tmp_path, capsys):
    from anyir_edge.export import onnx_export

    model = anyir_edge.load_model(ckpt)
    onnx_path = tmp_path / "tiny.onnx"
    exp, opset = onnx_export.trace(model, str(onnx_path), "fold")
    onnx_export.finalize(str(onnx_path), onnx_export.metadata(model, "fold", exp, opset, None))
    big = np.ascontiguousarray(np.tile(cv2.imread(str(corpus / "good.png")), (3, 3, 1)))  # 120x144
    cv2.imwrite(str(corpus / "big.png"), big)
    out = tmp_path / "o"
    rc, stdout, err = restore([corpus / "big.png", "-o", out, "--model", onnx_path, "--tile", "64",
                               "--overlap", "16", "--threads", "1", "-q"], capsys)
    assert rc == 0 and "onnxruntime" in stdout and cv2.imread(str(out / "big.png")).shape == big.shape
    rc, _, err = restore([corpus / "big.png", "-o", tmp_path / "o2", "--model", onnx_path, "--tile", "0",
                          "--memory-limit", "1", "-q"], capsys)
    assert rc == 1 and "too large for the memory limit without tiling" in err[0]
    assert not (tmp_path / "o2" / "big.png").exists()


def test_default_model_missing_is_one_line(corpus, tmp_path, capsys, monkeypatch):
    import anyir_edge.models.checkpoint

    monkeypatch.setattr(anyir_edge.models.checkpoint, "WEIGHTS_DIR", tmp_path / "no-weights")
    rc, _, err = restore([corpus / "good.png", "-o", tmp_path / "o"], capsys)
    assert rc == 1 and len(err) == 1 and f"no shipped weights for '{anyir_edge.DEFAULT_MODEL}'" in err[0]
    assert not (tmp_path / "o").exists()


def test_console_script_runs(corpus, ckpt, tmp_path):
    import subprocess

    exe = shutil.which("anyir-restore")
    if exe is None:
        pytest.skip("package not installed")
    r = subprocess.run([exe, str(corpus / "empty.png"), str(corpus / "one.png"), "-o", str(tmp_path / "o"),
                        "--model", str(ckpt), "--threads", "1"], capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines[0].startswith("anyir-restore: error: ") and "empty.png" in lines[0]
    assert (tmp_path / "o" / "one.png").is_file() and not (tmp_path / "o" / "empty.png").exists()
