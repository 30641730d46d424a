"""anyir-eval: metrics by hand on a two-image folder, seeded synthetic sets, table/JSON output."""
import json
import subprocess

import cv2
import numpy as np
import pytest
import torch

import anyir_edge
from anyir_edge import save_model
from anyir_edge.errors import AnyIRError
from anyir_edge.eval import SETS, evaluate, load_pairs, markdown_table, resolve_sets
from anyir_edge.metrics import psnr, quantize, ssim


@pytest.fixture
def pair_folder(tmp_path):
    rng = np.random.default_rng(1)
    for sub in ("lq", "gt"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(24, 32), (19, 27)]):
        gt = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        lq = np.clip(gt.astype(int) + rng.integers(-30, 30, gt.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "set" / "gt" / f"{i}.png"), gt)
        cv2.imwrite(str(tmp_path / "set" / "lq" / f"{i}.png"), lq)
    return tmp_path / "set"


def _rgb(p):
    return cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)


def test_two_image_folder_matches_hand_computation(pair_folder, tiny_model, tmp_path):
    ckpt = save_model(tiny_model, tmp_path / "m.safetensors")
    out_json = tmp_path / "r.json"
    r = subprocess.run(["anyir-eval", "--model", str(ckpt), "--sets", str(pair_folder), "--json", str(out_json),
                        "--no-progress", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    full = json.loads(out_json.read_text())
    assert full["model"]["weights_sha256"] == anyir_edge.weights_sha256(tiny_model)  # which weights were measured
    res = full["sets"]["set"]
    model_psnr, input_psnr, model_ssim = [], [], []
    for i in range(2):
        lq, gt = _rgb(pair_folder / "lq" / f"{i}.png"), _rgb(pair_folder / "gt" / f"{i}.png")
        with torch.no_grad():
            out = tiny_model(torch.from_numpy(lq.transpose(2, 0, 1).astype(np.float32) / 255)[None])
        out = quantize(out[0].clamp(0, 1).numpy().transpose(1, 2, 0))
        model_psnr.append(psnr(out, gt))
        model_ssim.append(ssim(out, gt))
        # by hand: 10 log10(255^2 / MSE)
        input_psnr.append(10 * np.log10(255**2 / np.mean((lq.astype(float) - gt) ** 2)))
    assert res["n"] == 2
    assert res["input"]["psnr"] == pytest.approx(np.mean(input_psnr), abs=1e-9)
    assert res["model"]["psnr"] == pytest.approx(np.mean(model_psnr), abs=1e-3)
    assert res["model"]["ssim"] == pytest.approx(np.mean(model_ssim), abs=1e-5)
    assert "| set |" in r.stdout and "average" in r.stdout


def test_synthetic_sets_are_seeded_and_labelled(shared_data):
    s = SETS["haze-synth"]
    a = list(load_pairs(s, shared_data, seed=0, limit=2))
    b = list(load_pairs(s, shared_data, seed=0, limit=2))
    c = list(load_pairs(s, shared_data, seed=1, limit=2))
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not np.array_equal(a[0][1], c[0][1])
    assert s.synthetic and not SETS["cbsd68-25"].synthetic
    # synthetic rain: bright streaks added to the clean image (every pixel at least as bright, some brighter)
    r = list(load_pairs(SETS["rain-synth"], shared_data, limit=2))
    assert SETS["rain-synth"].synthetic and all((lq >= gt).all() and (lq > gt).any() for _, lq, gt in r)
    # sigma 25 noise on CBSD68: the noisy input PSNR is near the literature's 20.2 dB (clipping to [0, 255] raises it a little)
    n = list(load_pairs(SETS["cbsd68-25"], shared_data, limit=10))
    assert np.mean([psnr(lq, gt) for _, lq, gt in n]) == pytest.approx(20.2, abs=0.7)


def test_identity_restorer_scores_the_input(pair_folder):
    res = evaluate(lambda x: x, resolve_sets([str(pair_folder)]), pair_folder.parent, progress=False)
    s = res["sets"]["set"]
    assert s["model"]["psnr"] == pytest.approx(s["input"]["psnr"])
    assert "(synthetic)" not in markdown_table(res)


def test_unknown_set_and_missing_data(tmp_path):
    with pytest.raises(AnyIRError, match="did you mean 'rain100l'"):
        resolve_sets(["rain100"])
    with pytest.raises(AnyIRError, match="not found"):
        list(load_pairs(SETS["cbsd68-25"], tmp_path))


def test_clean_set_scores_a_restorer_that_leaves_clean_photos_alone(shared_data, pair_folder, tmp_path):
    from anyir_edge.eval import PSNR_CAP, write_json

    clean = SETS["clean"]
    assert clean in resolve_sets(["all"])
    pairs = list(load_pairs(clean, shared_data, limit=3))
    assert all(np.array_equal(lq, gt) for _, lq, gt in pairs)

    def darken_first(x, calls=[]):  # darkens only the first image it sees, as a model mistaking it for haze would
        calls.append(1)
        return x * 0.8 if len(calls) == 1 else x

    res = evaluate(darken_first, [clean, *resolve_sets([str(pair_folder)])], shared_data, limit=3, progress=False)
    c = res["sets"]["clean"]
    assert c["input"]["psnr"] == PSNR_CAP and c["input"]["ssim"] == pytest.approx(1.0)
    first = pairs[0][0]
    assert c["model"]["worst"]["image"] == first and np.isfinite(c["model"]["worst"]["psnr"])
    # identical images count as the cap in the mean, not as infinity
    assert c["model"]["psnr"] == pytest.approx((c["model"]["worst"]["psnr"] + 2 * PSNR_CAP) / 3)
    # the cross-set average is over restoration tasks only
    assert res["average"]["model"]["psnr"] == pytest.approx(res["sets"]["set"]["model"]["psnr"])
    table = markdown_table(res)
    assert "| clean | 3 | identical |" in table
    out = tmp_path / "r.json"
    write_json(res, out)

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    back = json.loads(out.read_text(), parse_constant=no_constants)
    assert back["sets"]["clean"]["per_image"][1]["model"]["psnr"] is None  # identical: infinite PSNR
