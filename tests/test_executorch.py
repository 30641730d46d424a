"""``anyir-export --to executorch`` (issue #22): a ``.pte`` with the XNNPACK delegate, certified on
ExecuTorch's own runtime, opened by ``Restorer`` like every engine (metadata from the program's
constant method, batch image by image, tiles where the image exceeds the size it was built for).

Runs where ExecuTorch is installed (``pip install anyir-edge[executorch]``; CI installs it).  The
network is a small AnyIR (dim 8, one block per level; ``small_pte`` in conftest.py) so lowering
takes a minute, not five.
"""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("executorch")

from anyir_edge.errors import EngineError  # noqa: E402
from anyir_edge.export import ExportError, export  # noqa: E402
from anyir_edge.runtime import Restorer  # noqa: E402
from anyir_edge.runtime.errors import ImageError  # noqa: E402

from conftest import SMALL_ANYIR, SMALL_PTE_MAX_SIDE, perturbed  # noqa: E402

MAX_SIDE = SMALL_PTE_MAX_SIDE
SMALL = SMALL_ANYIR


@pytest.fixture(scope="module")
def model():
    return perturbed("anyir-tiny", seed=4, **SMALL)  # the network conftest's small_pte exported


@pytest.fixture(scope="module")
def pte(small_pte):
    return small_pte


def test_the_program_is_certified_on_executorchs_runtime(pte):
    cert = json.loads(pte.certificate_path.read_text())
    assert pte.path.suffix == ".pte" and cert["engine"] == pte.path.name
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60
    assert cert["engine_backend"].startswith("executorch (XNNPACK")
    assert cert["max_side"] == MAX_SIDE and cert["deploy_form"] == "mobile" and pte.fft == "fold"
    # XNNPACK takes everything but the attention output's reshape (one per block)
    report = cert["delegation"]
    assert set(report["ops_outside_delegate"]) <= {"view_copy"}
    blocks = sum(SMALL["blocks"]) + 3 + SMALL["refine_blocks"]
    assert report["partitions"] <= blocks + 1


def test_restorer_reads_the_programs_metadata_and_matches_pytorch(pte, model):
    rng = np.random.default_rng(5)
    x = rng.random((2, 3, 37, 45), dtype=np.float32)  # a batch of two, odd size: padded, run one by one
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with Restorer.open(str(pte.path), threads=1, tile=0) as r:
        assert r.backend.kind == "executorch" and r.backend.max_side == MAX_SIDE
        assert r.metadata["anyir_edge.arch"] == "anyir" and r.metadata["anyir_edge.deploy_form"] == "mobile"
        out = r.forward(x)
    assert out.shape == x.shape
    assert 10 * np.log10(1 / np.mean((out - ref) ** 2)) > 60


def test_images_larger_than_the_program_are_tiled(pte, model):
    rng = np.random.default_rng(6)
    img = rng.random((90, 70, 3), dtype=np.float32)
    with Restorer.open(str(pte.path), threads=1) as r:
        tile, overlap = r.plan_tile(90, 70)
        assert 0 < tile <= MAX_SIDE and 0 < overlap < tile // 2
        out = r.restore(img)
        with pytest.raises(ImageError, match="built for"):
            r.restore(img, tile=0)
        with pytest.raises(ImageError, match="larger than"):
            r.restore(img, tile=MAX_SIDE + 8)
        with pytest.raises(EngineError, match="built for H and W up to"):
            r.backend.run(np.zeros((1, 3, 72, 64), np.float32))
    with Restorer.open(model, tile=tile, overlap=overlap) as ref:  # the same tiles on PyTorch
        want = ref.restore(img)
    assert 10 * np.log10(1 / np.mean((out - want) ** 2)) > 60


@pytest.mark.parametrize("opts,match", [
    ({"max_side": 30}, "multiple of 8"),
    ({"max_side": 8192}, "multiple of 8 from 32"),
    ({"max_side": 24}, "from 32 to"),
    ({"half": True}, "executorch"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, opts, match):
    with pytest.raises(ExportError, match=match):
        export("anyir-paper-tiny", to="executorch", output=str(tmp_path), **opts)
    assert not list(tmp_path.iterdir())
