"""The authors' AnyIR layout (``anyir``): equal to their code, their checkpoints load as they are.

Golden fixtures (``tests/fixtures/anyir-authors-*``) were made once, outside this repository:
Amazingren/AnyIR ``net/anyir.py`` at commit 098dcd1 was run in a scratch folder (with einops,
and empty stand-ins for the fvcore/timm imports it does not use at run time) as
``AnyIR(dim=8, num_blocks=[1, 2, 1, 1], num_refinement_blocks=1)`` (seed 0) and
``AnyIR(dim=4, num_blocks=[1, 1, 1, 1], num_refinement_blocks=2, bias=True,
LayerNorm_type="BiasFree")`` (seed 1).  Every bias was set to N(0, 0.1), every LayerNorm /
BatchNorm weight, ``tau``, ``temperature`` and ``lam`` to U(0.5, 1.5), BatchNorm running means
to N(0, 0.2) and running variances to U(0.5, 2); then ``eval()`` and one forward pass on a
(2, 3, 24, 40) U(0, 1) input.  Kept: the network's state dict inside a PyTorch Lightning-style
``.ckpt`` (``state_dict`` with the ``net.`` prefix, an argparse ``Namespace`` in
``hyper_parameters``, callbacks, loops), and the input / output tensors (``.io.safetensors``).
No code of theirs is in this repository.
"""
import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import anyir_edge
from anyir_edge import CheckpointError, load_model, save_model
from anyir_edge.models import create, detect_architecture, get_architecture
from anyir_edge.models.complexity import count_macs, count_params

FIXTURES = Path(__file__).parent / "fixtures"
TAGS = ("d8", "d4-bias-biasfree")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _io(tag):
    return load_file(FIXTURES / f"anyir-authors-{tag}.io.safetensors")


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("mode", ["fft", "fold", "matmul"])
def test_forward_equals_the_authors_code(tag, mode):
    m = load_model(FIXTURES / f"anyir-authors-{tag}.ckpt", fft_mode=mode)
    io = _io(tag)
    with torch.no_grad():
        y = m(io["input"])
    assert _psnr(y, io["output"]) >= 100.0


def test_config_is_inferred_from_shapes():
    a = load_model(FIXTURES / "anyir-authors-d8.ckpt").config
    assert (a.dim, a.blocks, a.decoder_blocks, a.refine_blocks, a.heads) == (8, (1, 2, 1, 1), (1, 2, 1), 1, (1, 2, 4, 8))
    assert (a.bias, a.layernorm, a.ffn_expansion, a.gate_kernel) == (False, "withbias", 2.0, 7)
    assert a.gate_expansion == pytest.approx(8 / 3)
    b = load_model(FIXTURES / "anyir-authors-d4-bias-biasfree.ckpt").config
    assert (b.dim, b.refine_blocks, b.bias, b.layernorm) == (4, 2, True, "biasfree")


@pytest.mark.parametrize("name,params,gmacs", [("anyir", 5.736376e6, 26.253), ("anyir-l", 8.513436e6, 39.185)])
def test_their_configurations_cost_what_their_code_costs(name, params, gmacs):
    # figures of their file's two configurations, counted on it with torch's flop counter
    m = create(name, fft_mode="fold")
    assert count_params(m) == int(params)
    assert count_macs(m, 224) / 1e9 == pytest.approx(gmacs, abs=0.01)


class TrainingOptions:
    """Stands for any class of a user's training code pickled into a checkpoint."""

    def __init__(self):
        self.lr = 2e-4


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_lightning_checkpoint_with_python_objects_loads_safely(tmp_path):
    """Their .ckpt holds a Namespace; others hold classes of the training code: the weights load
    (the objects become inert placeholders); a callable that torch blocks is refused, never run."""
    sd = load_model(FIXTURES / "anyir-authors-d8.ckpt").state_dict()
    p = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in sd.items()},
                "hyper_parameters": {"opt": TrainingOptions(), "fn": len}}, p)
    assert load_model(p).config.dim == 8
    marker = tmp_path / "pwned"
    for payload in ({"state_dict": {f"net.{k}": v for k, v in sd.items()}, "x": Payload(marker)},
                    {"x": Payload(marker)}):
        q = tmp_path / "evil.ckpt"
        torch.save(payload, q)
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as ei:
            load_model(q)
        assert "\n" not in str(ei.value)
    assert not marker.exists()
    r = tmp_path / "no-weights.pth"
    torch.save({"opt": TrainingOptions()}, r)
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(r)


def test_bare_state_dict_and_our_safetensors_give_the_same_model(tmp_path):
    ref = load_model(FIXTURES / "anyir-authors-d8.ckpt")
    bare = tmp_path / "bare.pth"
    torch.save(ref.state_dict(), bare)
    ours = save_model(ref, tmp_path / "ours.safetensors")
    x = _io("d8")["input"]
    with torch.no_grad():
        outs = [load_model(p)(x) for p in (bare, ours)]
    assert torch.equal(outs[0], outs[1])
    from safetensors import safe_open

    with safe_open(str(ours), "pt") as f:
        assert f.metadata()["anyir_edge.arch"] == "anyir"


def test_detector_tells_the_layouts_and_restormer_apart():
    authors = create("anyir-tiny").state_dict()
    paper = create("anyir-paper-tiny").state_dict()
    assert get_architecture(create("anyir-tiny")).name == "anyir"
    assert detect_architecture(authors).name == "anyir"
    assert detect_architecture(paper).name == "anyir-paper"
    # Restormer / PromptIR keys: patch_embed, encoder levels and reduce_chan, but no GatedDA
    restormer = {k.replace("attn.gatedcnn", "attn.x"): v for k, v in authors.items() if "gatedcnn" not in k}
    assert detect_architecture(restormer) is None


def test_restormer_checkpoint_is_refused_with_one_line(tmp_path):
    restormer = {k: v for k, v in create("anyir-tiny").state_dict().items() if "gatedcnn" not in k}
    p = tmp_path / "restormer.pth"
    torch.save({"params": restormer}, p)
    with pytest.raises(CheckpointError, match="not of a supported architecture") as ei:
        load_model(p)
    assert "\n" not in str(ei.value)


def test_metadata_that_disagrees_with_the_tensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    m = create("anyir-tiny")
    cfg = {**m.config.to_dict(), "dim": 512, "blocks": [40, 40, 40, 40]}
    p = tmp_path / "liar.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(p),
              metadata={"anyir_edge.arch": "anyir", "anyir_edge.config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="does not match its tensors"):
        load_model(p)


@pytest.mark.parametrize("tag", TAGS)
def test_deploy_form_folds_batchnorm_and_is_the_same_function(tag):
    from anyir_edge.models.anyir import DeployGatedDA

    m = load_model(FIXTURES / f"anyir-authors-{tag}.ckpt", fft_mode="fold")
    d = get_architecture(m).deploy_copy(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in d.modules())
    assert sum(isinstance(x, DeployGatedDA) for x in d.modules()) == sum(
        isinstance(x, torch.nn.BatchNorm2d) for x in m.modules()) > 0
    x = _io(tag)["input"]
    with torch.no_grad():
        assert _psnr(d(x), m(x)) >= 100.0
    # the original is untouched
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())


def test_batchnorm_uses_running_statistics_in_eval():
    """One image's output must not depend on the other images in its batch (eval mode)."""
    m = load_model(FIXTURES / "anyir-authors-d8.ckpt")
    x = _io("d8")["input"]
    with torch.no_grad():
        both = m(x)
        first = m(x[:1])
    assert torch.allclose(both[:1], first, atol=1e-6)


def test_tau_is_tiled_over_alpha_channels():
    from anyir_edge.models.anyir.model import GatedDA

    g = GatedDA(4, expansion=5.0)  # alpha = 20 - 8 = 12 channels > C' = 4: tiled three times
    t = torch.arange(4.0).view(1, 4, 1, 1)
    assert g.tau_for_alpha(t).flatten().tolist() == [0, 1, 2, 3] * 3
    g = GatedDA(14)  # round(8/3 * 14) = 37: alpha = 9 < 14: the first nine
    assert g.tau_for_alpha(torch.arange(14.0).view(1, 14, 1, 1)).flatten().tolist() == list(range(9))


def test_configuration_limits_are_checked_before_building():
    from anyir_edge.models.anyir import AnyIRConfig
    from anyir_edge.models.base import ConfigError

    for bad in ({"dim": 7}, {"dim": 10**6}, {"blocks": [1, 2]}, {"heads": [1, 3, 4, 8]}, {"layernorm": "x"},
                {"blocks": "1,2,2,4"}, {"dim": "16"}, {"bias": 1}, {"dec_blocks": [1, 2]}):
        with pytest.raises(ConfigError):
            AnyIRConfig.from_dict({**AnyIRConfig().to_dict(), **bad})


def test_their_checkpoint_goes_through_export_restore_and_bench(tmp_path, capsys):
    """No conversion step: the authors' Lightning .ckpt straight into anyir-export (certified),
    anyir-restore (on the checkpoint and on the engine) and anyir-bench."""
    import cv2
    import numpy as np

    from anyir_edge.cli import bench as bench_cli, export as export_cli, restore as restore_cli, run

    ckpt = FIXTURES / "anyir-authors-d8.ckpt"
    rc = run("anyir-export", export_cli.main, ["--to", "onnx", "--model", str(ckpt), "--output", str(tmp_path) + "/",
                                               "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    onnx_path = tmp_path / "anyir-authors-d8.onnx"
    cert = json.loads((tmp_path / "anyir-authors-d8.onnx.parity.json").read_text())
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60 and cert["arch"] == "anyir"
    assert cert["config"]["dim"] == 8 and cert["weights_sha256"] == anyir_edge.weights_sha256(load_model(ckpt))
    img = (np.random.default_rng(0).random((37, 45, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), img)
    outs = []
    for model in (ckpt, onnx_path):
        out = tmp_path / f"out-{model.suffix[1:]}.png"
        rc = run("anyir-restore", restore_cli.main, [str(tmp_path / "in.png"), "-o", str(out), "--model", str(model),
                                                     "--threads", "1", "-q"])
        assert rc == 0, capsys.readouterr().err
        outs.append(cv2.imread(str(out)).astype(int))
    assert outs[0].shape == img.shape and np.abs(outs[0] - outs[1]).max() <= 1
    rc = run("anyir-bench", bench_cli.main, ["--model", str(ckpt), "--size", "32", "--backends", "torch,onnxruntime",
                                             "--runs", "1", "--warmup", "0", "--threads", "1", "--no-progress",
                                             "--json", str(tmp_path / "b.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[1]["parity_psnr_db"] >= 60
