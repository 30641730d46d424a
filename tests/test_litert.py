"""``anyir-export --to litert`` (issue #22): a ``.tflite`` with one signature per size named with
``--sizes`` (litert-torch converts static shapes), certified on LiteRT's own interpreter at each
of them, opened by ``Restorer`` like every engine (metadata from the flatbuffer's metadata entry,
batch image by image, tiles with a square signature where the image pads to none of them).

Runs where litert-torch and ai-edge-litert are installed (``pip install anyir-edge[litert]``; CI
does not install them: litert-torch pulls jax and transformers, ~2 GB).  The network is a small
AnyIR (dim 8, one block per level) so the two signatures convert in about a minute.
"""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_litert")

from anyir_edge import artifact  # noqa: E402
from anyir_edge.errors import EngineError, EngineWarning  # noqa: E402
from anyir_edge.export import ExportError, export  # noqa: E402
from anyir_edge.export.parity import parity_inputs  # noqa: E402
from anyir_edge.runtime import Restorer  # noqa: E402
from anyir_edge.runtime.errors import ImageError  # noqa: E402

from conftest import SMALL_ANYIR, export_small, perturbed  # noqa: E402

SIZES = "64,48x80"


def _psnr(a, b):
    return 10 * np.log10(1 / np.mean((a - b) ** 2))


@pytest.fixture(scope="module")
def model():
    return perturbed("anyir-tiny", seed=7, **SMALL_ANYIR)


@pytest.fixture(scope="module")
def tflite(model, tmp_path_factory):
    return export_small(model, tmp_path_factory.mktemp("litert"), to="litert", sizes=SIZES,
                        inputs=parity_inputs(max_side=128)[:4])


def test_the_model_is_certified_on_litert_at_every_size(tflite):
    cert = json.loads(tflite.certificate_path.read_text())
    assert tflite.path.suffix == ".tflite" and cert["engine"] == tflite.path.name
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60
    assert cert["engine_backend"].startswith("litert (XNNPACK") and cert["deploy_form"] == "mobile"
    assert cert["sizes"] == ["64x64", "48x80"]
    assert cert["signatures"] == {"restore_64x64": [1, 3, 64, 64], "restore_48x80": [1, 3, 48, 80]}
    assert "CONV_2D" in cert["ops"]["restore_64x64"] and not any("FLEX" in op for op in cert["ops"]["restore_64x64"])
    # the parity inputs were fitted to the sizes (some a few pixels short, padded back by the runtime)
    padded = {(-(-h // 8) * 8, -(-w // 8) * 8) for h, w in (row["size"] for row in cert["inputs"])}
    assert padded == {(64, 64), (48, 80)}
    assert any(row["size"] not in ([64, 64], [48, 80]) for row in cert["inputs"])


def test_restorer_reads_the_metadata_and_matches_pytorch(tflite, model):
    rng = np.random.default_rng(5)
    x = rng.random((2, 3, 45, 77), dtype=np.float32)  # pads to 48x80: a batch of two, run one by one
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with Restorer.open(str(tflite.path), threads=1) as r:
        assert r.backend.kind == "litert" and r.backend.sizes == ((48, 80), (64, 64))
        assert r.metadata[artifact.SIZES] == "64x64,48x80" and r.metadata[artifact.ARCH] == "anyir"
        assert r.plan_tile(45, 77) == (0, r.overlap)
        out = r.forward(x)
    assert out.shape == x.shape and _psnr(out, ref) > 60


def test_other_sizes_are_tiled_with_a_square_signature(tflite, model):
    rng = np.random.default_rng(6)
    img = rng.random((90, 110, 3), dtype=np.float32)
    with Restorer.open(str(tflite.path), threads=1) as r:
        tile, overlap = r.plan_tile(90, 110)
        assert tile == 64 and 0 < overlap <= 16
        out = r.restore(img)
        with pytest.raises(ImageError, match="tiling is off"):
            r.restore(img, tile=0)
        with pytest.raises(ImageError, match="square sizes"):
            r.restore(img, tile=72)
        with pytest.raises(ImageError, match="re-export with --sizes 40x40"):
            r.restore(img[:37, :33])
        with pytest.raises(EngineError, match="built for 48x80,64x64 only"):
            r.backend.run(np.zeros((1, 3, 72, 64), np.float32))
    with Restorer.open(model, tile=tile, overlap=overlap) as ref:  # the same tiles on PyTorch
        want = ref.restore(img)
    assert _psnr(out, want) > 60


@pytest.mark.parametrize("opts,match", [
    ({"sizes": "65"}, "multiple of 8"),
    ({"sizes": "224,abc"}, "expected sizes like"),
    ({"sizes": "8"}, "from 16 to 4096"),
    ({"sizes": ",".join(str(16 * i) for i in range(1, 10))}, "at most 8"),
    ({"int8": True, "half": True}, "exclude each other"),
    ({"calib": "."}, "only used with --int8"),
    ({"int8": True, "calib": "/nonexistent"}, "nonexistent"),
    ({"max_side": 64}, "litert"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, opts, match):
    with pytest.raises(ExportError, match=match):
        export("anyir-paper-tiny", to="litert", output=str(tmp_path), **opts)
    assert not list(tmp_path.iterdir())


class _AddOne(torch.nn.Module):
    def forward(self, x):
        return x + 1


@pytest.fixture(scope="module")
def plain_tflite(tmp_path_factory):
    """A .tflite of x + 1 at 1x3x16x24 converted by litert-torch directly (no anyir-edge metadata)."""
    import litert_torch

    litert_torch.config.show_progress = False
    p = tmp_path_factory.mktemp("plain") / "plain.tflite"
    p.write_bytes(litert_torch.convert(_AddOne().eval(), (torch.rand(1, 3, 16, 24),)).model_content())
    return p


def test_a_model_without_metadata_runs_on_trust_with_a_warning(plain_tflite):
    with pytest.warns(EngineWarning, match="no anyir-edge metadata"):
        r = Restorer.open(str(plain_tflite), threads=1)
    assert r.backend.sizes == ((16, 24),)
    assert np.allclose(r.forward(np.zeros((1, 3, 13, 20), np.float32)), 1.0)  # padded to 16x24, cropped back


@pytest.mark.parametrize("meta,match", [
    ({artifact.SIZE_MULTIPLE: "7"}, "not a multiple of its size multiple 7"),
    ({artifact.SIZES: "32x32"}, "metadata name sizes 32x32 but its signatures take 16x24"),
    ({artifact.SIZES: "16 by 24"}, "bad anyir_edge.sizes metadata"),
    (None, "not a readable TFLite model|LiteRT cannot load it"),
])
def test_corrupt_models_are_refused_in_one_line(plain_tflite, tmp_path, meta, match):
    p = tmp_path / "bad.tflite"
    raw = plain_tflite.read_bytes()
    p.write_bytes(artifact.write_tflite(raw, meta) if meta is not None else raw[: len(raw) // 3])
    with pytest.raises(EngineError, match=match) as e:
        Restorer.open(str(p), threads=1)
    assert "\n" not in str(e.value)


def test_metadata_round_trip_replaces_an_earlier_entry(plain_tflite):
    raw = artifact.write_tflite(plain_tflite.read_bytes(), {"anyir_edge.name": "a"})
    raw = artifact.write_tflite(raw, {"anyir_edge.name": "b", "anyir_edge.sizes": "16x24"})
    assert artifact.read_tflite(raw) == {"anyir_edge.name": "b", "anyir_edge.sizes": "16x24"}
    assert artifact.read_tflite(plain_tflite.read_bytes()) == {}


def test_written_models_drop_tensor_names_and_compute_the_same():
    """write_tflite repacks without tensor names (litert-torch's module paths, a fifth of an INT8
    ``anyir-tiny``) and empty buffers; the signature keeps its input and output names."""
    import litert_torch
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1)).eval()
    raw = litert_torch.signature("restore_16x16", net, (torch.rand(1, 3, 16, 16),)).convert().model_content()
    out = artifact.write_tflite(raw, {"anyir_edge.name": "n"})

    def names(buf):
        g = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
        return [g.Tensors(i).Name() for i in range(g.TensorsLength())]

    assert any(names(raw)) and not any(names(out)) and len(out) < len(raw)
    x = np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32)
    ys = []
    for buf in (raw, out):
        it = Interpreter(model_content=buf, num_threads=1)
        (name, sig), = it.get_signature_list().items()
        ys.append(it.get_signature_runner(name)(**{sig["inputs"][0]: x})[sig["outputs"][0]])
    assert name == "restore_16x16" and np.array_equal(ys[0], ys[1])
    assert np.abs(ys[0] - net(torch.from_numpy(x)).detach().numpy()).max() < 1e-5


def test_anyir_restore_runs_the_tflite(tflite, tmp_path, capsys):
    import cv2

    from anyir_edge.cli.restore import main

    img = (np.random.default_rng(8).random((61, 64, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), img)
    rc = main([str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", str(tflite.path), "--threads", "1",
               "-q"])
    assert rc == 0 and cv2.imread(str(tmp_path / "out" / "in.png")).shape == img.shape


def test_half_stores_fp16_weights_and_passes_the_fp16_gate(model, tflite, tmp_path):
    """--half: conv / linear weights in FP16 (the file shrinks), activations FP32, gate 45 dB."""
    import anyir_edge

    ckpt = tmp_path / "small.safetensors"
    anyir_edge.save_model(model, ckpt)
    res = export(str(ckpt), to="litert", output=str(tmp_path), threads=1, inputs=parity_inputs(max_side=128)[:2],
                 sizes="64", half=True, log=lambda msg: None)
    cert = res.certificate
    assert res.path.name == "small-fp16.tflite" and cert["precision"] == "fp16" and cert["threshold_db"] == 45
    assert cert["passed"] and 45 <= cert["summary"]["psnr_min"] < 120  # FP16 rounding shows, FP32 exactness does not
    assert "DEQUANTIZE" in cert["ops"]["restore_64x64"] and "not verified" in cert["fp16"]
    with Restorer.open(str(res.path), threads=1) as r:
        assert r.metadata[artifact.PRECISION] == "fp16" and r.backend.sizes == ((64, 64),)


@pytest.fixture(scope="module")
def int8_tflite(model, tmp_path_factory):
    """``--int8 --sizes 64`` of the test network, calibrated on one shipped photo (its six degraded
    crops: pt2e's histogram observers take seconds per sample, the slow part of the build)."""
    import shutil

    import anyir_edge
    from anyir_edge.export.parity import ASSETS_DIR

    tmp = tmp_path_factory.mktemp("litert-int8")
    (tmp / "calib").mkdir()
    shutil.copy(ASSETS_DIR / "wood_160x160.png", tmp / "calib")
    ckpt = tmp / "small.safetensors"
    anyir_edge.save_model(model, ckpt)
    return export(str(ckpt), to="litert", output=str(tmp), threads=1, inputs=parity_inputs(max_side=128)[:2],
                  sizes="64", int8=True, calib=str(tmp / "calib"), log=lambda msg: None)


def test_int8_computes_the_quantized_convolutions_in_int8_and_passes_the_int8_gate(int8_tflite, tflite):
    cert = int8_tflite.certificate
    assert int8_tflite.path.name == "small-int8.tflite" and cert["precision"] == "int8" and cert["threshold_db"] == 35
    assert cert["passed"] and 35 <= cert["summary"]["psnr_min"] < 60  # INT8 rounding shows
    rp = cert["reduced_precision"]
    assert rp["calibration"]["images"] == 1 and rp["calibration"]["crop"] == [[64, 64]]
    assert {"reads the image", "writes the output"} <= set(rp["float_nodes_by_rule"].values())
    # litert-torch keeps transposed convolutions float: left float from the start, named
    assert rp["float_by_delegate"] and all(".up" in c for c in rp["float_by_delegate"])
    assert set(rp["float_nodes"]) >= set(rp["float_nodes_by_rule"]) | set(rp["float_by_delegate"])
    # what the file computes in INT8, read back from the flatbuffer: every quantized convolution
    int8 = cert["int8_ops"]["restore_64x64"]
    assert int8["CONV_2D"] + int8["DEPTHWISE_CONV_2D"] == len(rp["quantized_nodes"])
    assert int8_tflite.path.stat().st_size < 0.6 * tflite.path.stat().st_size  # INT8 weights


def test_the_restorer_runs_the_int8_model_near_pytorch(int8_tflite, model):
    img = np.random.default_rng(8).random((61, 58, 3), dtype=np.float32) * 0.8 + 0.1  # pads to 64x64
    with Restorer.open(str(int8_tflite.path), threads=1) as r:
        assert r.metadata[artifact.PRECISION] == "int8" and r.backend.sizes == ((64, 64),)
        out = r.restore(img)
    with Restorer.open(model, tile=0) as ref:
        want = ref.restore(img)
    assert out.shape == img.shape and 30 < _psnr(out, want) < 60


@pytest.mark.parametrize("name", ["promptir-authors-d6", "moce-ir-authors-d4-spread"])
def test_the_authors_promptir_and_moce_ir_convert_and_match(name, tmp_path):
    """The other architectures' mobile forms on LiteRT (the authors' golden fixtures): MoCE-IR's for
    LiteRT has no grouped transposed convolution, which litert-torch converts into a model whose
    TRANSPOSE_CONV fails to prepare."""
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / f"{name}.ckpt"
    res = export(str(fixture), to="litert", output=str(tmp_path), threads=1, inputs=parity_inputs(max_side=128)[:3],
                 sizes="64", log=lambda msg: None)
    cert = res.certificate
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60 and cert["deploy_form"] == "mobile"
