"""PromptIR and MoCE-IR go through the same pipeline as AnyIR (issue #19): their authors'
checkpoints export to ONNX and OpenVINO with a passing certificate, the engines run in
``Restorer`` equal to the PyTorch model, the reduced-precision gates apply, and the graph that
TensorRT would get passes the compatibility check.

The checkpoints are the golden fixtures of ``tests/test_promptir.py`` and ``tests/test_moce_ir.py``
(their own code run with random weights; see those files for how they were made).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anyir_edge import load_model
from anyir_edge.export import ExportError, ParityError, export
from anyir_edge.export.parity import parity_inputs, psnr
from anyir_edge.export.trt import check_only
from anyir_edge.runtime import Restorer

FIXTURES = Path(__file__).parent / "fixtures"
CKPTS = {"promptir": FIXTURES / "promptir-authors-d6.ckpt", "moce-ir": FIXTURES / "moce-ir-authors-d4-spread.ckpt"}
FFT = {"promptir": "fold", "moce-ir": "matmul"}  # auto: fold where the frequency path is linear (or absent)


@pytest.fixture(scope="module")
def small_inputs():
    return parity_inputs(max_side=96)[:3]


@pytest.fixture(scope="module")
def engines(tmp_path_factory, small_inputs, one_thread):
    out = {}
    for arch, ckpt in CKPTS.items():
        d = tmp_path_factory.mktemp(arch)
        for to in ("onnx", "openvino"):
            out[arch, to] = export(str(ckpt), to=to, output=str(d), threads=1, inputs=small_inputs, log=lambda m: None)
    return out


@pytest.mark.parametrize("arch", sorted(CKPTS))
@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_their_checkpoint_exports_with_a_passing_certificate(engines, arch, to):
    res = engines[arch, to]
    cert = json.loads(res.certificate_path.read_text())
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60 and cert["arch"] == arch
    assert res.fft == FFT[arch] and cert["engine"] == res.path.name


@pytest.mark.parametrize("arch", sorted(CKPTS))
@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_the_engine_restores_what_pytorch_restores(engines, arch, to):
    model = load_model(CKPTS[arch])
    rng = np.random.default_rng(3)
    img = rng.random((37, 53, 3), dtype=np.float32)  # odd size: padded (in the graph or by the runtime), cropped
    with torch.no_grad():
        ref = model(torch.from_numpy(img.transpose(2, 0, 1)[None].copy()))[0].numpy().transpose(1, 2, 0)
    with Restorer.open(str(engines[arch, to].path), threads=1, tile=0) as r:
        assert r.describe()  # the engine's own metadata, read through the contract
        y = r.restore(img)
    assert y.shape == img.shape
    assert psnr(np.clip(y, 0, 1), np.clip(ref, 0, 1)) >= 60


@pytest.mark.parametrize("arch", sorted(CKPTS))
def test_tensorrt_compatibility_check_passes(arch):
    rep = check_only(str(CKPTS[arch]))
    assert rep.ok, [p.message for p in rep.errors]
    if arch == "moce-ir":  # routing without control flow, constant DFT matrices
        assert not {"If", "Loop", "NonZero", "DFT"} & set(rep.op_counts)
        assert {"TopK", "ScatterElements"} <= set(rep.op_counts)


def test_fold_is_refused_where_spectra_are_multiplied(tmp_path):
    with pytest.raises(ExportError, match="only for a linear") as e:
        export(str(CKPTS["moce-ir"]), to="onnx", fft="fold", output=str(tmp_path), log=lambda m: None)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())


@pytest.mark.parametrize("precision,gate", [("fp16", 45.0), ("int8", 35.0)])
def test_reduced_precision_gates_apply(tmp_path, small_inputs, one_thread, precision, gate):
    """The gate of the engine's precision decides, as for AnyIR: a passing engine is placed with
    its certificate, a failing one is kept only as NAME.rejected.* (both are possible here: the
    weights are random)."""
    opts = {"half": True} if precision == "fp16" else {"int8": True, "search": False}
    try:
        res = export(str(CKPTS["moce-ir"]), to="onnx", output=str(tmp_path), threads=1, inputs=small_inputs,
                     log=lambda m: None, **opts)
    except ParityError:
        cert_path = next(tmp_path.glob("*.rejected.onnx.parity.json"))
        cert = json.loads(cert_path.read_text())
        assert not cert["passed"] and cert["summary"]["psnr_min"] < gate
        assert not (tmp_path / f"moce-ir-authors-d4-spread-{precision}.onnx").exists()
        return
    cert = json.loads(res.certificate_path.read_text())
    assert cert["passed"] and cert["precision"] == precision and cert["threshold_db"] == gate
    assert cert["summary"]["psnr_min"] >= gate
