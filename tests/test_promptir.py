"""PromptIR, the authors' layout (``promptir``): equal to their code, their checkpoints load as they are.

Golden fixtures (``tests/fixtures/promptir-authors-*``) were made once, outside this repository,
by running va1shn9v/PromptIR ``net/model.py`` (HEAD 106159a; the file last changed in 20eff77)
in a scratch folder, with einops.  Their file hard-codes the prompt widths and the widths
that depend on them for dim 48, so a small network was made without editing it: their
``PromptIR(dim=d, num_blocks=..., num_refinement_blocks=..., heads=..., ffn_expansion_factor=...,
bias=..., LayerNorm_type=..., decoder=True)`` was constructed, then the sub-modules whose widths
are fixed numbers were replaced by instances of their own classes at small widths (P = prompt
widths, L = prompts per block, S = prompt sizes, U = the unused ``chnl_reduce`` outputs):
``promptN = PromptGenBlock(prompt_dim=P[N], prompt_len=L[N], prompt_size=S[N], lin_dim=2C/4C/8C)``;
``chnl_reduceN = Conv2d(P[N], U[N], 1)``; ``reduce_noise_channel_N = Conv2d(level width + U[N],
level width, 1)``; ``reduce_chan_level3 = Conv2d(6C, 4C, 1)``; ``noise_level3/2/1 =
TransformerBlock(8C + P3 / 4C + P2 / 2C + P1, heads[2], ...)``; ``reduce_noise_level3/2/1 =
Conv2d(that width, 4C / 4C / 2C, 1)`` (all with their ``bias``).  Their ``forward`` ran unchanged.

* ``d6``: dim 6, num_blocks [1, 2, 1, 1], 1 refinement block, heads [1, 2, 4, 8], FFN 2.66,
  no biases, WithBias LayerNorm, P (4, 12, 8), L (3, 4, 5), S (8, 6, 4), U (4, 12, 10); seed 0.
* ``d2-bias-biasfree``: dim 2, num_blocks [1, 1, 1, 1], 2 refinement blocks, heads [1, 2, 2, 4],
  FFN 2.0, bias=True, BiasFree LayerNorm, P (4, 6, 8), L (2, 2, 3), S (5, 3, 2), U (4, 6, 6); seed 1.

Every bias was set to N(0, 0.1), every LayerNorm weight and ``temperature`` to U(0.5, 1.5)
(``prompt_param`` keeps their U(0, 1) initialisation); then ``eval()`` and one forward pass on a
(2, 3, 24, 40) U(0, 1) input, so each prompt is resized both up and down.  Kept: the state dict
in a PyTorch Lightning-style ``.ckpt`` (``state_dict`` with the ``net.`` prefix, an argparse
``Namespace`` in ``hyper_parameters``, callbacks, loops, empty ``optimizer_states``) and the
input / output (``.io.safetensors``).  Their full ``PromptIR(decoder=True)``, counted on the meta
device: 35,592,263 parameters, 548 state-dict entries, 132,227,693,472 MACs at 224x224
(``FlopCounterMode`` FLOPs / 2).  No code of theirs is in this repository.
"""
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from anyir_edge import load_model
from anyir_edge.models import create, detect_architecture, get_architecture
from anyir_edge.models.base import ConfigError
from anyir_edge.models.complexity import count_macs, count_params
from anyir_edge.models.promptir import ARCH, PromptIRConfig

FIXTURES = Path(__file__).parent / "fixtures"
TAGS = ("d6", "d2-bias-biasfree")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The fixtures are tiny: one thread runs them fastest (and beside other work on the machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _io(tag):
    return load_file(FIXTURES / f"promptir-authors-{tag}.io.safetensors")


def _ckpt(tag):
    return FIXTURES / f"promptir-authors-{tag}.ckpt"


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("mode", ["fft", "fold", "matmul"])
def test_forward_equals_the_authors_code(tag, mode):
    m = load_model(_ckpt(tag), fft_mode=mode)
    assert get_architecture(m).name == "promptir"
    io = _io(tag)
    with torch.no_grad():
        y = m(io["input"])
    assert _psnr(y, io["output"]) >= 100.0


def test_config_is_inferred_from_shapes():
    a = load_model(_ckpt("d6")).config
    assert (a.dim, a.blocks, a.decoder_blocks, a.refine_blocks, a.heads, a.noise_heads) == (
        6, (1, 2, 1, 1), (1, 2, 1), 1, (1, 2, 4, 8), (4, 4, 4))
    assert (a.bias, a.layernorm, a.ffn_expansion) == (False, "withbias", 2.66)
    assert (a.prompt_dims, a.prompt_lens, a.prompt_sizes, a.unused_widths) == ((4, 12, 8), (3, 4, 5), (8, 6, 4),
                                                                                (4, 12, 10))
    b = load_model(_ckpt("d2-bias-biasfree")).config
    assert (b.dim, b.blocks, b.refine_blocks, b.heads, b.noise_heads) == (2, (1, 1, 1, 1), 2, (1, 2, 2, 4), (2, 2, 2))
    assert (b.bias, b.layernorm, b.ffn_expansion) == (True, "biasfree", 2.0)
    assert (b.prompt_dims, b.prompt_lens, b.prompt_sizes, b.unused_widths) == ((4, 6, 8), (2, 2, 3), (5, 3, 2),
                                                                               (4, 6, 6))


def test_their_configuration_costs_what_their_code_costs():
    """Counted on the meta device (no arithmetic): their figures, exactly."""
    with torch.device("meta"):
        m = create("promptir")
    assert m.size_multiple == 8
    assert count_params(m) == 35_592_263
    assert count_macs(m, 224) == 132_227_693_472


def test_their_configuration_has_their_keys_and_shapes():
    shapes = ARCH.expected_shapes(PromptIRConfig())
    assert len(shapes) == 548
    for key, shape in {"prompt1.prompt_param": (1, 5, 64, 64, 64), "prompt3.linear_layer.weight": (5, 384),
                       "chnl_reduce3.weight": (256, 320, 1, 1), "reduce_noise_channel_3.weight": (192, 448, 1, 1),
                       "noise_level3.ffn.project_in.weight": (3744, 704, 1, 1),
                       "noise_level2.ffn.project_out.weight": (320, 851, 1, 1),
                       "noise_level1.attn.temperature": (4, 1, 1), "reduce_chan_level3.weight": (192, 288, 1, 1),
                       "reduce_noise_level2.weight": (192, 320, 1, 1)}.items():
        assert shapes[key] == shape, key
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert ARCH.detect(meta) and ARCH.infer_config(meta) == PromptIRConfig()
    # a network without the unused convs is also described by its tensors
    lean = PromptIRConfig(unused_widths=(0, 0, 0))
    lean_shapes = ARCH.expected_shapes(lean)
    assert set(shapes) - set(lean_shapes) == {f"chnl_reduce{i}.weight" for i in (1, 2, 3)} | {
        f"reduce_noise_channel_{i}.weight" for i in (1, 2, 3)}
    assert ARCH.infer_config({k: torch.empty(s, device="meta") for k, s in lean_shapes.items()}) == lean


def test_detection_tells_promptir_and_anyir_apart():
    from anyir_edge.models.anyir import ARCH as ANYIR

    for tag in ("d8", "d4-bias-biasfree"):
        sd = load_model(FIXTURES / f"anyir-authors-{tag}.ckpt").state_dict()
        assert detect_architecture(sd).name == "anyir" and not ARCH.detect(sd)
    for tag in TAGS:
        sd = load_model(_ckpt(tag)).state_dict()
        assert detect_architecture(sd).name == "promptir" and not ANYIR.detect(sd)
        # Restormer (the same U-Net without prompts) is neither
        restormer = {k: v for k, v in sd.items() if not k.startswith(("prompt", "noise_level", "reduce_noise"))}
        assert detect_architecture(restormer) is None
        # a PromptIR descendant with AnyIR's GatedDA would be claimed by AnyIR alone
        hybrid = {**sd, "encoder_level1.0.attn.gatedcnn.W_exp.weight": torch.zeros(1)}
        assert not ARCH.detect(hybrid)


@pytest.mark.parametrize("tag", TAGS)
def test_deploy_form_is_the_same_function(tag):
    from anyir_edge.models.deploy import DeployGDFN
    from anyir_edge.models.layers import GatedFFN

    m = load_model(_ckpt(tag))
    d = get_architecture(m).deploy_copy(m)
    assert not any(isinstance(x, GatedFFN) for x in d.modules())
    assert sum(isinstance(x, DeployGDFN) for x in d.modules()) == sum(isinstance(x, GatedFFN) for x in m.modules())
    assert all(x.dw_a.out_channels % 8 == 0 for x in d.modules() if isinstance(x, DeployGDFN))
    x = _io(tag)["input"]
    with torch.no_grad():
        assert _psnr(d(x), m(x)) >= 100.0
    assert any(isinstance(x, GatedFFN) for x in m.modules())  # the original is untouched


def test_prompts_are_per_image():
    """Each image's prompt weights come from its own features: a batch changes nothing."""
    m = load_model(_ckpt("d6"))
    x = _io("d6")["input"]
    with torch.no_grad():
        both = m(x)
        second = m(x[1:])
    assert torch.allclose(both[1:], second, atol=1e-6)


def test_onnx_export_resizes_prompts_at_any_size(tmp_path):
    """The TorchScript exporter keeps the prompts' resize dynamic: traced at 24x40, the graph
    equals PyTorch at other sizes (each level's prompt is resized up and down)."""
    ort = pytest.importorskip("onnxruntime")
    m = load_model(_ckpt("d6"))
    d = get_architecture(m).deploy_copy(m)

    class Padded(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.forward_padded(x)

    path = tmp_path / "promptir.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Padded(d), (torch.rand(2, 3, 24, 40),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["restored"],
                          dynamic_axes={"image": axes, "restored": axes})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for shape in ((1, 3, 32, 16), (2, 3, 72, 56)):
        x = torch.rand(*shape, generator=g)
        with torch.no_grad():
            ref = m.forward_padded(x)
        out = sess.run(None, {"image": x.numpy()})[0]
        assert out.shape == shape
        assert _psnr(torch.from_numpy(np.ascontiguousarray(out)), ref) >= 100.0


def test_configuration_limits_are_checked_before_building():
    base = PromptIRConfig().to_dict()
    for bad in ({"dim": 7}, {"dim": 10**6}, {"heads": [1, 2, 5, 8]}, {"noise_heads": [3, 4, 4]},
                {"prompt_dims": [64, 128]}, {"prompt_lens": [5, 0, 5]}, {"prompt_sizes": [1024, 1024, 1024]},
                {"unused_widths": [64, 0, 256]}, {"layernorm": "x"}, {"ffn_expansion": 0}, {"bias": 1},
                {"prompt_sizes": "64,32,16"}, {"decoder": True}):
        with pytest.raises(ConfigError):
            PromptIRConfig.from_dict({**base, **bad})
    assert PromptIRConfig.from_dict(base) == PromptIRConfig()


def test_checkpoint_whose_prompts_do_not_fit_is_refused(tmp_path):
    from anyir_edge import CheckpointError

    sd = load_model(_ckpt("d6")).state_dict()
    sd["prompt2.prompt_param"] = torch.rand(1, 4, 12, 6, 5)  # not square
    p = tmp_path / "bad.pth"
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match="not \\(1, L, P, S, S\\)"):
        load_model(p)
    sd["prompt2.prompt_param"] = torch.rand(1, 4, 16, 6, 6)  # P no longer fits conv3x3 / noise_level2
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(p)
