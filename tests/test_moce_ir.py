"""MoCE-IR (``moce-ir``): equal to the authors' code, their checkpoints load as they are, the
routing is per image and exports without control flow.

Golden fixtures (``tests/fixtures/moce-ir-authors-*``) were made once, outside this repository:
eduardzamfir/MoCE-IR ``src/net/moce_ir.py`` at commit a1a6e74 was run in a scratch folder (with
einops, and an empty stand-in for the fvcore import it does not use at run time) as

* ``d4-spread``: ``MoCEIR(dim=4, num_blocks=[1, 1, 1, 1], num_dec_blocks=[0, 1, 2],
  heads=[1, 2, 4, 8], num_refinement_blocks=1, num_experts=4, topk=1, rank_type="spread",
  depth_type="constant", stage_depth=[1, 1, 1])`` (seed 0, two 24 x 40 images);
* ``d4-top2-bias-biasfree``: ``MoCEIR(dim=4, num_blocks=[1, 1, 1, 1], num_dec_blocks=[1, 1, 1],
  heads=[1, 2, 2, 4], num_refinement_blocks=2, num_experts=3, topk=2, rank=2,
  rank_type="constant", depth_type="lin", stage_depth=[2, 1, 1], bias=True,
  LayerNorm_type="BiasFree", ffn_expansion_factor=2.66)`` (seed 1, two 32 x 24 images).

Every bias was set to N(0, 0.1), every LayerNorm weight and ``temperature`` to U(0.5, 1.5),
the decoder's cross-attention temperatures then multiplied by 8 and the experts' output convs
(``proj.2``, ``body.proj_out``) by 60 (``d4-spread``) / 10 (``d4-top2``), so that the experts
visibly change the output: in their code, moving any one router's choice to the next expert
for either image moves the output to 71.6 dB / 65.8 dB of the true one (recorded in the
metadata), far below this file's 100 dB.  Their ``RoutingFunction`` adds random noise to the logits even in eval; it was switched off by
setting ``noise_std = 0`` on every RoutingFunction (``randn_like(logits) * 0``).  The routers'
weights were then set, router by router in forward order, to random N(0, 0.3) weights plus the
least-squares correction that gives each image logits 2 at its wanted experts (1.5 at a second
choice), so that the two images take different experts in every decoder block (the experts
chosen are in the ``routes`` metadata of the ``.io.safetensors``, image by image, router by
router).  Then ``eval()`` and one forward pass per image: their eval path selects experts with
``topk(...).squeeze(0)`` and is only right at batch 1, so each image ran alone and the outputs
were stacked.  Kept: the network's state dict inside a PyTorch Lightning-style ``.ckpt``
(``state_dict`` with the ``net.`` prefix, an argparse ``Namespace`` in ``hyper_parameters``,
callbacks, loops), and the input / output tensors.  No code of theirs is in this repository.
"""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from anyir_edge import load_model
from anyir_edge.models import CONFIGS, create, detect_architecture, get_architecture
from anyir_edge.models.base import ConfigError
from anyir_edge.models.complexity import count_macs, count_params
from anyir_edge.models.moce_ir import MoCEIRConfig
from anyir_edge.models.moce_ir.model import FFTAttention, PatchDFT, Router, from_patches, to_patches

FIXTURES = Path(__file__).parent / "fixtures"
TAGS = ("d4-spread", "d4-top2-bias-biasfree")
TOP_K = {"d4-spread": 1, "d4-top2-bias-biasfree": 2}  # topk is not in the weights


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _io(tag):
    return load_file(FIXTURES / f"moce-ir-authors-{tag}.io.safetensors")


def _routes(tag) -> list:
    with safe_open(str(FIXTURES / f"moce-ir-authors-{tag}.io.safetensors"), "pt") as f:
        return json.loads(f.metadata()["routes"])


def _load(tag, mode="fft"):
    path = FIXTURES / f"moce-ir-authors-{tag}.ckpt"
    cfg = {**load_model(path).config.to_dict(), "top_k": TOP_K[tag]}
    return load_model(path, fft_mode=mode, config=cfg)


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("mode", ["fft", "matmul"])
def test_forward_equals_the_authors_code(tag, mode):
    m = _load(tag, mode)
    io = _io(tag)
    with torch.no_grad():
        y = m(io["input"])  # both images in one batch: each routed on its own
    assert _psnr(y, io["output"]) >= 100.0


@pytest.mark.parametrize("tag", TAGS)
def test_routing_picks_the_experts_their_code_picked(tag):
    m = _load(tag)
    seen = []
    for r in m.modules():
        if isinstance(r, Router):
            r.register_forward_hook(lambda mod, inp, out: seen.append(out[1].tolist()))
    with torch.no_grad():
        m(_io(tag)["input"])
    ours = [[layer[i] for layer in seen] for i in range(2)]  # image by image, router by router
    assert ours == _routes(tag)
    assert ours[0] != ours[1]  # the fixture proves routing: the two images take different experts


@pytest.mark.parametrize("tag", TAGS)
def test_a_wrong_expert_would_fail_the_comparison(tag):
    """The fixtures prove the experts, not only the choice: any one router taking the next
    expert (for both images) ends far below the 100 dB the comparison asks."""
    io = _io(tag)
    routers = [r for r in _load(tag).modules() if isinstance(r, Router)]
    for which in range(len(routers)):
        m = _load(tag)
        r = [x for x in m.modules() if isinstance(x, Router)][which]
        orig = r.forward

        def shifted(x, f, orig=orig):
            gates, chosen = orig(x, f)
            return gates.roll(1, dims=1), (chosen + 1) % gates.shape[1]

        r.forward = shifted
        with torch.no_grad():
            assert _psnr(m(io["input"]), io["output"]) < 90.0


@pytest.mark.parametrize("tag", TAGS)
def test_batch_routes_each_image_on_its_own(tag):
    m = _load(tag)
    x = _io(tag)["input"]
    with torch.no_grad():
        both = m(x)
        alone = torch.cat([m(x[:1]), m(x[1:])])
    assert _psnr(both, alone) >= 100.0


@pytest.mark.parametrize("tag", TAGS)
def test_sparse_routing_is_the_same_function(tag):
    m = _load(tag)
    x = _io(tag)["input"]
    with torch.no_grad():
        dense = m(x)
        sparse = m.set_routing("sparse")(x)
    assert m.routing_mode == "sparse"
    assert _psnr(sparse, dense) >= 100.0
    with pytest.raises(ValueError, match="routing"):
        m.set_routing("eager")


def test_config_is_inferred_from_shapes():
    a = load_model(FIXTURES / "moce-ir-authors-d4-spread.ckpt").config
    assert (a.dim, a.blocks, a.dec_blocks, a.refine_blocks, a.heads) == (4, (1, 1, 1, 1), (0, 1, 2), 1, (1, 2, 4, 8))
    assert (a.experts, a.rank_type, a.top_k, a.bias, a.layernorm, a.ffn_expansion) == (4, "spread", 1, False,
                                                                                      "withbias", 2.0)
    b = load_model(FIXTURES / "moce-ir-authors-d4-top2-bias-biasfree.ckpt").config
    assert (b.dim, b.dec_blocks, b.refine_blocks, b.heads, b.experts) == (4, (1, 1, 1), 2, (1, 2, 2, 4), 3)
    assert (b.rank_type, b.rank, b.bias, b.layernorm, b.ffn_expansion) == ("constant", 2, True, "biasfree", 2.66)
    assert b.top_k == 1  # not in the weights: the default (both of their configurations), config= overrides


def test_their_configurations_are_registered():
    assert CONFIGS["moce-ir-s"] == MoCEIRConfig(dim=32, blocks=(4, 6, 6, 8), dec_blocks=(2, 4, 4), refine_blocks=4,
                                                heads=(1, 2, 4, 8), experts=4, top_k=1, rank_type="spread")
    assert CONFIGS["moce-ir"] == MoCEIRConfig(dim=48, blocks=(4, 6, 6, 8), dec_blocks=(2, 4, 4), refine_blocks=4,
                                              heads=(1, 2, 4, 8), experts=4, top_k=1, rank_type="spread")
    assert create("moce-ir-s").size_multiple == 8


def _force_expert(model, e):
    """Every router picks expert ``e`` (gate 1): the eager cost of one routing outcome."""
    for r in model.modules():
        if isinstance(r, Router):
            def forced(x, f, r=r):
                idx = torch.full((x.shape[0], 1), e, dtype=torch.long)
                return torch.zeros(x.shape[0], r.freq_gate.out_features).scatter(1, idx, 1.0), idx
            r.forward = forced
    return model


@pytest.mark.parametrize("name,params,gmacs", [("moce-ir-s", 11_477_752, 39.361942784),
                                               ("moce-ir", 25_353_796, 85.242208128)])
def test_their_configurations_cost_what_their_code_costs(name, params, gmacs):
    # their file's two configurations (options.py), counted on it with torch's flop counter at
    # 224 x 224, batch 1; the dense form (every expert) is their code with topk = 4.  Counted on
    # the meta device (shapes only), as `anyir-edge info` counts
    with torch.device("meta"):
        m = create(name)
    assert count_params(m) == params
    assert count_macs(m, 224) == int(gmacs * 1e9)


def test_eager_routing_costs_what_their_eager_path_costs():
    # their code at 64 x 64 with every router forced to expert 0 / expert 3 (at 224 x 224:
    # 32.46 G and 36.59 G against 39.36 G dense); the dense form costs their code with topk = 4
    m = create("moce-ir-s")
    assert count_macs(m, 64) == 3_213_473_024
    m.set_routing("sparse")
    assert count_macs(_force_expert(m, 0), 64) == 2_650_341_376
    assert count_macs(_force_expert(m, 3), 64) == 2_986_950_656


def test_detector_tells_the_architectures_apart():
    moce = create("moce-ir-s").state_dict()
    assert detect_architecture(moce).name == "moce-ir"
    assert get_architecture(create("moce-ir-s")).name == "moce-ir"
    assert detect_architecture(create("anyir-tiny").state_dict()).name == "anyir"
    assert detect_architecture(create("anyir-paper-tiny").state_dict()).name == "anyir-paper"
    # a Restormer-like trunk with MoCE's key names but no frequency embedding is not MoCE-IR
    assert detect_architecture({k: v for k, v in moce.items() if not k.startswith("freq_embed.")}) is None


@pytest.mark.parametrize("tag", TAGS)
def test_deploy_form_is_the_same_function(tag):
    from anyir_edge.models.deploy import DeployGDFN
    from anyir_edge.models.layers import GatedFFN

    m = _load(tag, "matmul")
    d = get_architecture(m).deploy_copy(m)
    assert not any(isinstance(x, GatedFFN) for x in d.modules())
    assert sum(isinstance(x, DeployGDFN) for x in d.modules()) == sum(isinstance(x, GatedFFN) for x in m.modules())
    x = _io(tag)["input"]
    with torch.no_grad():
        assert _psnr(d(x), m(x)) >= 100.0
    assert any(isinstance(x, GatedFFN) for x in m.modules())  # the original is untouched


def test_frequency_path_modes():
    with pytest.raises(ValueError, match="not exact"):
        create("moce-ir-s", fft_mode="fold")
    m = _load("d4-spread")
    with pytest.raises(ValueError, match="not exact"):
        m.set_fft_mode("fold")
    m.set_fft_mode("matmul")
    assert {f.fft_mode for f in m.modules() if isinstance(f, FFTAttention)} == {"matmul"}
    assert type(m).fast_fft_mode() == "matmul"


@pytest.mark.parametrize("p", [4, 8, 16, 32])
def test_patch_dft_matches_torch_fft(p):
    g = torch.Generator().manual_seed(p)
    x = torch.randn(2, 3, p, p, generator=g)
    dft = PatchDFT(p)
    re, im = dft.rfft2(x)
    ref = torch.fft.rfft2(x)
    assert torch.allclose(re, ref.real, atol=1e-4) and torch.allclose(im, ref.imag, atol=1e-4)
    spec = torch.complex(torch.randn(2, p, p // 2 + 1, generator=g), torch.randn(2, p, p // 2 + 1, generator=g))
    assert torch.allclose(dft.irfft2(spec.real, spec.imag), torch.fft.irfft2(spec, s=(p, p)), atol=1e-5)
    assert not any(k in dict(dft.state_dict()) for k in ("cw", "sw"))  # constants, not weights


@pytest.mark.parametrize("h,w", [(5, 7), (8, 8), (13, 33)])
def test_patches_round_trip(h, w):
    x = torch.rand(2, 3, h, w)
    p = to_patches(x, 8)
    assert p.shape == (2, 3, -(-h // 8), -(-w // 8), 8, 8)
    assert torch.equal(from_patches(p, h, w), x)
    assert float(p.sum()) == pytest.approx(float(x.sum()), rel=1e-6)  # the padding is zeros


@pytest.mark.parametrize("h,w", [(1, 1), (13, 21), (40, 33)])
def test_output_shape_equals_input(h, w):
    m = _load("d4-spread")
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_onnx_export_is_dynamic_and_has_no_control_flow(tmp_path):
    """The tiny fixture network (four experts, patches 4-32), deploy form, "matmul" frequency path,
    traced at batch 2 x 64 x 72 with sparse routing switched on (a trace takes the dense form);
    onnxruntime at batch 2 x 24 x 40, where the two images take different experts."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Padded(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_padded(x)

    m = _load("d4-spread", "matmul")
    d = get_architecture(m).deploy_copy(m).set_routing("sparse")
    path = str(tmp_path / "moce.onnx")
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(Padded(d), (torch.rand(2, 3, 64, 72),), path, dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["restored"],
                      dynamic_axes={"image": axes, "restored": axes}, do_constant_folding=True)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert not ops & {"If", "Loop", "NonZero", "Scan"}
    assert {"TopK", "ScatterElements"} <= ops  # the routing is in the graph
    assert not ops & {"Cos", "Sin", "Range"}  # the DFT matrices are constants
    io = _io("d4-spread")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y = torch.from_numpy(sess.run(None, {"image": io["input"].numpy()})[0])
    with torch.no_grad():
        ref = m.forward_padded(io["input"])
    assert _psnr(y, ref) >= 60.0
    assert _psnr(y, io["output"]) >= 60.0  # and the authors' code


def test_configuration_limits_are_checked_before_building():
    base = MoCEIRConfig().to_dict()
    for bad in ({"dim": 0}, {"dim": 10**6}, {"blocks": [1, 2]}, {"heads": [1, 3, 4, 8]}, {"layernorm": "x"},
                {"experts": 0}, {"experts": 99}, {"top_k": 5}, {"top_k": 0}, {"rank_type": "cubic"},
                {"dim": 4}, {"rank_type": "fact", "rank": 9}, {"dec_blocks": [1, 2]}, {"experts": "4"}):
        with pytest.raises(ConfigError):
            MoCEIRConfig.from_dict({**base, **bad})
    # spread ranks need width / 2^(E-1) >= 1 only where a decoder level has blocks
    assert MoCEIRConfig.from_dict({**base, "dim": 4, "dec_blocks": [0, 1, 1]}).expert_ranks(8) == (1, 2, 4, 8)
