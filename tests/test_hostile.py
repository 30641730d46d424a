"""Hostile and careless input (issue #20): a corpus that the tests build themselves, one class of
failure per section, each case asserting the exact outcome: the one-line error, the exit code,
which outputs exist and are intact, and no traceback."""
from __future__ import annotations

import errno
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import anyir_edge
from anyir_edge import artifact
from anyir_edge.cli import bench as bench_cli, export as export_cli, restore as restore_cli, run
from anyir_edge.errors import CheckpointError, EngineError, EngineWarning, ImageError, ImageWarning
from anyir_edge.runtime import Restorer
from conftest import perturbed

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(main, argv, capsys, prog="anyir-x"):
    """(exit code, stdout lines, stderr lines) of a command run in-process, as its console script."""
    try:
        rc = run(prog, main, [str(a) for a in argv])
    except SystemExit as e:  # argparse exits
        rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out.splitlines(), [ln for ln in err.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A verified ONNX engine of a random anyir-tiny, exported on one small parity input."""
    from anyir_edge.export import export, parity_inputs

    d = tmp_path_factory.mktemp("eng")
    res = export(perturbed(), to="onnx", output=str(d / "m.onnx"), threads=1, inputs=parity_inputs(max_side=96)[:1],
                 log=lambda m: None)
    return res.path


def _png(path: Path, h=24, w=32, seed=0) -> Path:
    img = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height (and holds almost no data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


# ------------------------------------------------- 1. per-call arguments are validated
@pytest.mark.parametrize("kw,match", [({"tile": -8}, "tile must be"), ({"tile": 8.5}, "tile must be"),
                                      ({"overlap": -1}, "overlap must be"), ({"overlap": 2.5}, "overlap must be"),
                                      ({"tile": True}, "tile must be"), ({"tile": 16, "overlap": 8}, "less than half")])
def test_per_call_tiling_is_refused_like_the_constructor(engine, kw, match):
    img = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    with Restorer.open(engine, threads=1) as r:
        with pytest.raises(ImageError, match=match) as e:
            r.restore(img, **kw)
        assert "\n" not in str(e.value)
        with pytest.raises(ImageError, match=match):
            Restorer(r.backend, **kw)
        # a valid per-call tiling covers every pixel (no black or NaN region)
        out = r.restore(img.astype(np.float32) / 255, tile=16, overlap=4)
        assert np.isfinite(out).all() and (out > 0).mean() > 0.5


@pytest.mark.parametrize("limit", [0, -5, "lots", True])
def test_memory_limit_must_be_positive(engine, limit):
    with Restorer.open(engine, threads=1) as r:
        with pytest.raises(ImageError, match="memory_limit must be a positive number"):
            Restorer(r.backend, memory_limit=limit)


# ------------------------------------------------------ 2. a batch goes on past a bad file
def test_batch_goes_on_past_undecodable_and_oversized_files(engine, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _png(src / "a_good.png")
    (src / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _png_declaring(src / "c_huge.png", 100_000, 100_000)
    (src / "d_empty.png").write_bytes(b"")
    _png(src / "e_good.png", seed=1)
    rc, out, err = _cli(restore_cli.main, [src, "-o", tmp_path / "out", "--model", engine, "--threads", "1", "-q"],
                        capsys)
    assert rc == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_good.png", "e_good.png"]
    assert len(err) == 4
    assert any("b_corrupt.png: cannot decode" in ln for ln in err)
    assert any("c_huge.png: cannot decode: its header declares more pixels than the decoder accepts" in ln for ln in err)
    assert any("d_empty.png: empty file" in ln for ln in err)
    assert err[-1] == "anyir-restore: 3 of 5 input(s) failed" and out[-1].startswith("restored 2 of 5 image(s)")


def test_a_write_error_fails_one_file_not_the_batch(engine, tmp_path, capsys, monkeypatch):
    import anyir_edge.runtime.io as io

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        _png(src / f"p{i}.png", seed=i)
    real = io.atomic_write

    def full_disk(path, data):
        if Path(path).name == "p1.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(io, "atomic_write", full_disk)
    rc, out, err = _cli(restore_cli.main, [src, "-o", tmp_path / "out", "--model", engine, "--threads", "1", "-q"],
                        capsys)
    assert rc == 1 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p2.png"]
    assert err[0].endswith("p1.png: cannot write (No space left on device)")


@pytest.mark.parametrize("case", ["under_a_file", "is_a_file_for_many"])
def test_unwritable_output_is_found_before_the_model_loads(tmp_path, capsys, case):
    src = tmp_path / "in"
    src.mkdir()
    _png(src / "a.png")
    _png(src / "b.png", seed=3)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker / "sub" if case == "under_a_file" else blocker
    # the model does not even exist: the output problem must be reported first
    rc, _, err = _cli(restore_cli.main, [src, "-o", out, "--model", tmp_path / "missing.onnx", "-q"], capsys)
    assert rc == 1 and len(err) == 1 and "missing.onnx" not in err[0]
    assert ("cannot write there" in err[0]) or ("exists and is not a folder" in err[0])
    assert blocker.read_text() == "x"


# ------------------------------------------------------------- 3. photos keep orientation
@pytest.mark.parametrize("orientation,expect", [(1, "left"), (3, "right"), (6, "top"), (8, "bottom")])
def test_exif_orientation_is_applied_on_read(engine, tmp_path, capsys, orientation, expect):
    Image = pytest.importorskip("PIL.Image")
    a = np.full((24, 40, 3), 40, np.uint8)
    a[:, :8] = 230  # a bright band on the stored image's left
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    src = tmp_path / "phone.jpg"
    im.save(src, exif=exif.tobytes(), quality=95)
    rc, _, _ = _cli(restore_cli.main, [src, "-o", tmp_path / "o", "--model", engine, "--threads", "1", "-q"], capsys)
    assert rc == 0
    out = cv2.imread(str(tmp_path / "o" / "phone.jpg"), cv2.IMREAD_UNCHANGED).astype(float).mean(axis=2)
    upright = (24, 40) if orientation in (1, 3) else (40, 24)
    assert out.shape == upright
    edges = {"left": out[:, :6].mean(), "right": out[:, -6:].mean(), "top": out[:6].mean(), "bottom": out[-6:].mean()}
    assert max(edges, key=edges.get) == expect


# ---------------------------------------------- 4. checkpoint metadata is checked first
@pytest.mark.parametrize("bad,match", [({"dim": 10**7}, "out of range"), ({"blocks": [60, 60, 60, 60]}, "does not match"),
                                       ({"dim": "16"}, "expected int"), ({"heads": "1248"}, "list of integers"),
                                       ({"bias": "no"}, "expected bool")])
def test_metadata_is_validated_before_anything_is_built(tmp_path, bad, match):
    from safetensors.torch import save_file

    m = anyir_edge.models.create("anyir-tiny")
    p = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(p),
              metadata={"anyir_edge.arch": "anyir", "anyir_edge.config": json.dumps({**m.config.to_dict(), **bad})})
    with pytest.raises(CheckpointError, match=match) as e:
        anyir_edge.load_model(p)
    assert "\n" not in str(e.value)


# ---------------------------------------------- 5. a certificate describes its engine
def test_certificate_records_the_engine_digest_and_mismatch_warns(engine, tmp_path):
    import shutil

    cert = json.loads(artifact.certificate_path(engine).read_text())
    assert cert["engine_sha256"] == artifact.engine_sha256(engine) and cert["engine"] == engine.name
    d = tmp_path / "copy"
    d.mkdir()
    eng, crt = d / engine.name, d / artifact.certificate_path(engine).name
    shutil.copy(engine, eng)
    shutil.copy(artifact.certificate_path(engine), crt)
    with _no_engine_warning():
        Restorer.open(eng, threads=1).close()
    m = onnx.load(str(eng))
    m.metadata_props.add(key="edited", value="after verification")
    onnx.save(m, str(eng))
    with pytest.warns(EngineWarning, match="was made for another engine file"):
        Restorer.open(eng, threads=1).close()


class _no_engine_warning:
    def __enter__(self):
        import warnings

        self.cm = warnings.catch_warnings(record=True)
        self.seen = self.cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self.cm.__exit__(*exc)
        assert not [w for w in self.seen if issubclass(w.category, EngineWarning)], [str(w.message) for w in self.seen]


def test_a_stopped_export_never_leaves_a_passing_certificate_beside_another_engine(tmp_path, monkeypatch):
    """The previous certificate is removed before the new engine is placed, and the new one is
    written after: fail in between and the engine has no certificate at all."""
    from anyir_edge import export as E
    from anyir_edge.export import export, parity_inputs

    out = tmp_path / "m.onnx"
    first = export(perturbed(seed=1), to="onnx", output=str(out), threads=1, inputs=parity_inputs(max_side=96)[:1],
                   log=lambda m: None)
    assert artifact.certificate_path(out).is_file()

    def crash(*a, **k):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(E, "write_json", crash)
    with pytest.raises(OSError):
        export(perturbed(seed=2), to="onnx", output=str(out), threads=1, inputs=parity_inputs(max_side=96)[:1],
               log=lambda m: None)
    assert out.is_file() and not artifact.certificate_path(out).exists()
    assert artifact.engine_sha256(out) != first.certificate["engine_sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


# ------------------------------------------------------------------ 6. foreign engines
def _foreign(path: Path, inputs, outputs, meta=None, node_out=None) -> Path:
    nodes = [helper.make_node("Identity", [inputs[0].name], [o.name]) for o in outputs]
    g = helper.make_graph(nodes, "foreign", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in (meta or {}).items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))
    return path


def _t(name, dtype=TensorProto.FLOAT, shape=("n", 3, "h", "w")):
    return helper.make_tensor_value_info(name, dtype, list(shape))


@pytest.mark.parametrize("case,match", [
    ("two_outputs", "expected 1 input and 1 output"),
    ("uint8_input", "is uint8, the runtime feeds and reads float32"),
    ("fixed_size", r"has a fixed size \(1x3x256x256\)"),
    ("four_channels", "has 4 channels, expected 3"),
    ("rank_3", "has 3 dimensions, expected 4"),
])
def test_foreign_engines_that_cannot_work_are_refused_at_open(tmp_path, case, match):
    p = tmp_path / f"{case}.onnx"
    if case == "two_outputs":
        _foreign(p, [_t("x")], [_t("y"), _t("z")])
    elif case == "uint8_input":
        p.unlink(missing_ok=True)
        x = _t("x", TensorProto.UINT8)
        g = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "g", [x], [_t("y")])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    elif case == "fixed_size":
        _foreign(p, [_t("x", shape=(1, 3, 256, 256))], [_t("y", shape=(1, 3, 256, 256))])
    elif case == "four_channels":
        _foreign(p, [_t("x", shape=("n", 4, "h", "w"))], [_t("y", shape=("n", 4, "h", "w"))])
    else:
        _foreign(p, [_t("x", shape=(3, "h", "w"))], [_t("y", shape=(3, "h", "w"))])
    with pytest.raises(EngineError, match=match) as e:
        Restorer.open(p, threads=1)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_an_engine_without_our_metadata_runs_on_trust_with_one_warning(tmp_path):
    p = _foreign(tmp_path / "plain.onnx", [_t("x")], [_t("y")])
    with pytest.warns(EngineWarning, match="no anyir-edge metadata: running it on trust") as rec:
        r = Restorer.open(p, threads=1)
    assert len([w for w in rec if issubclass(w.category, EngineWarning)]) == 1
    img = (np.random.default_rng(0).random((9, 13, 3)) * 255).astype(np.uint8)
    assert np.array_equal(r.restore(img), img)  # an identity engine, padded and cropped back


# ------------------------------------------------------------------- 8. smaller ones
@pytest.mark.parametrize("main,argv,match", [
    (restore_cli.main, ["x.png", "-o", "o", "--threads", "-1"], "--threads: must be >= 1"),
    (restore_cli.main, ["x.png", "-o", "o", "--memory-limit", "-1"], "--memory-limit: must be > 0 and finite"),
    (restore_cli.main, ["x.png", "-o", "o", "--tile", "abc"], "--tile: expected a whole number"),
    (restore_cli.main, ["x.png", "-o", "o", "--bogus"], "unrecognized arguments: --bogus"),
    (bench_cli.main, ["--size", "0"], "sizes must be between 8 and 8192"),
    (bench_cli.main, ["--size", "100000"], "sizes must be between 8 and 8192"),
    (bench_cli.main, ["--threads", "0"], "--threads: must be >= 1"),
    (export_cli.main, ["--threads", "-2"], "--threads: must be >= 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, main, argv, match):
    rc, out, err = _cli(main, argv, capsys, prog="anyir-x")
    assert rc == 2 and len(err) == 1 and match in err[0] and "usage:" not in err[0], err


def test_export_output_that_is_an_existing_file_without_suffix(tmp_path, capsys):
    f = tmp_path / "notadir"
    f.write_text("keep me")
    rc, _, err = _cli(export_cli.main, ["--model", "anyir-paper-tiny", "--output", f], capsys)
    assert rc == 1 and len(err) == 1 and "exists and is not a folder" in err[0] and f.read_text() == "keep me"


def test_calibration_folder_without_a_decodable_image_is_refused_before_export(tmp_path, capsys):
    d = tmp_path / "calib"
    d.mkdir()
    (d / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "b.jpg").write_bytes(b"\xff\xd8\xff nothing")
    rc, _, err = _cli(export_cli.main, ["--model", "anyir-paper-tiny", "--int8", "--calib", d,
                                        "--output", tmp_path / "o/"], capsys)
    assert rc == 1 and len(err) == 1 and "none of its 2 image files can be decoded" in err[0]
    assert not (tmp_path / "o").exists()


def test_float_image_in_0_255_warns(engine):
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32) * 255
    with Restorer.open(engine, threads=1) as r, pytest.warns(ImageWarning, match="expected \\[0, 1\\]"):
        r.restore(img)


# --------------------------------------------- 7. raw engines take any size (--pad-in-graph)
def test_pad_in_graph_engine_runs_any_size_in_plain_onnxruntime(tmp_path):
    """The graph pads with the model's own rule and crops back: a user's own onnxruntime code
    (no anyir-edge runtime) gets the PyTorch output at odd and tiny sizes."""
    import onnxruntime as ort
    import torch

    from anyir_edge.export import export, parity_inputs
    from anyir_edge.models.base import pad_indices, pad_to_multiple

    for n, m in ((1, 1), (3, 5), (4, 9), (7, 8), (8, 13), (19, 2)):  # the traceable rule is the padding rule
        x = torch.arange(float(n * m)).view(1, 1, n, m)
        g = x.index_select(2, pad_indices(torch.tensor(n), 8)).index_select(3, pad_indices(torch.tensor(m), 8))
        assert torch.equal(g, pad_to_multiple(x, 8))
    model = perturbed(seed=4)
    odd = [(n, d, s, img[:37, :53]) for n, d, s, img in parity_inputs(max_side=96)[:2]]
    res = export(model, to="onnx", output=str(tmp_path / "any.onnx"), threads=1, inputs=odd, pad_in_graph=True,
                 log=lambda m: None)
    meta = artifact.read_onnx(res.path)
    assert meta[artifact.SIZE_MULTIPLE] == "1" and meta[artifact.PAD].startswith("in the graph")
    assert res.certificate["passed"] and {tuple(r["size"]) for r in res.certificate["inputs"]} == {(37, 53)}
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    model.set_fft_mode("fft")
    for shape in ((1, 3, 1, 1), (1, 3, 5, 7), (2, 3, 37, 53), (1, 3, 64, 64)):
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(sess.run(None, {"image": x})[0], ref, atol=5e-5)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_colour_profile_and_exif_travel_to_the_output(engine, tmp_path, capsys, suffix):
    """A phone photo's ICC profile and EXIF (camera, date) are kept in a JPEG / PNG output, with
    the orientation tag reset to 1 (the pixels were turned upright on read)."""
    Image = pytest.importorskip("PIL.Image")
    ImageCms = pytest.importorskip("PIL.ImageCms")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    a = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    exif[0x010F] = "ACME phones"  # Make
    src = tmp_path / f"phone{suffix}"
    im.save(src, exif=exif.tobytes(), icc_profile=icc)
    rc, _, err = _cli(restore_cli.main, [src, "-o", tmp_path / "o", "--model", engine, "--threads", "1", "-q"],
                      capsys)
    assert rc == 0, err
    with Image.open(tmp_path / "o" / src.name) as out:
        assert out.size == (24, 40)  # upright: width 24, height 40
        assert out.info.get("icc_profile") == icc
        tags = out.getexif()
        assert tags.get(0x010F) == "ACME phones" and tags.get(0x0112) == 1
    # a format that cannot hold them gets the pixels only, and no error
    rc, _, _ = _cli(restore_cli.main, [src, "-o", tmp_path / "b", "--ext", "bmp", "--model", engine, "--threads", "1",
                                       "-q"], capsys)
    assert rc == 0 and (tmp_path / "b" / "phone.bmp").is_file()


def test_sigterm_during_export_leaves_no_temporary_folder(tmp_path):
    """A killed export (SIGTERM: a service manager, a CI timeout) ends like Ctrl-C: exit 130, one
    line, and neither its hidden work folder nor a half-written engine is left."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "o"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", "import sys; from anyir_edge.cli import export_main; sys.argv[0] = "
                          "'anyir-export'; export_main()", "--model", "anyir-paper-tiny", "--output", str(out) + "/",
                          "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(q.name.startswith(".") for q in out.iterdir()):
        time.sleep(0.05)
    assert any(q.name.startswith(".") for q in out.iterdir()), "the export never started its work folder"
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "anyir-export: interrupted", err
    assert "Traceback" not in err and list(out.iterdir()) == []
