"""The reference models: costs, any input size, exact fft modes, gradients (both architectures
where the property is shared; the paper reading's own structure in its own tests)."""
import pytest
import torch

from anyir_edge.models import CONFIGS, create, get_config, pad_to_multiple
from anyir_edge.models.base import FrequencyPath
from anyir_edge.models.anyir_paper.model import DAB, GatedDA
from anyir_edge.models.complexity import count_macs, count_params
from anyir_edge.models.spectral import frequency_sum, irfft2_matmul, rfft2_matmul
from conftest import perturbed


@pytest.fixture(params=["anyir-tiny", "anyir-paper-tiny"])
def tiny_model(request):
    """Both architectures' tiny configurations, random weights (overrides conftest's)."""
    return perturbed(request.param)


def test_paper_reading_matches_paper_table6():
    m = create("anyir-paper")
    params = count_params(m)
    macs = count_macs(m, 224)
    assert abs(params - 6.29e6) / 6.29e6 <= 0.03, params
    assert abs(macs - 19e9) / 19e9 <= 0.10, macs


@pytest.mark.parametrize("name", ["anyir-tiny", "anyir-paper-tiny"])
def test_tiny_budget(name):
    m = create(name)
    assert count_params(m) <= 1.5e6
    assert count_macs(m, 224) <= 5e9
    assert count_params(m) > 0.5e6  # still a real network, not a stub


def test_macs_scale_with_area():
    m = create("anyir-tiny")
    assert count_macs(m, 64, 128) * 2 == pytest.approx(count_macs(m, 128, 128), rel=0.05)


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (7, 9), (8, 8), (17, 31), (64, 65)])
def test_output_shape_equals_input(tiny_model, h, w):
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = tiny_model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_bad_input_shape(tiny_model):
    with pytest.raises(ValueError, match="expected a"):
        tiny_model(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="expected a"):
        tiny_model(torch.rand(3, 8, 8))


def test_pad_rule():
    x = torch.arange(3 * 5, dtype=torch.float32).reshape(1, 1, 3, 5)
    y = pad_to_multiple(x, 8)
    assert y.shape[-2:] == (8, 8)
    assert torch.equal(y[..., :3, :5], x)
    # 5 -> 8 needs 3 < 5: reflect; 3 -> 8 needs 5 >= 3: replicate
    assert torch.equal(y[0, 0, 0, 5:], x[0, 0, 0, [3, 2, 1]])
    assert torch.equal(y[0, 0, 3:, 0], x[0, 0, 2, 0].repeat(5))


@pytest.mark.parametrize("h,w", [(7, 9), (63, 65), (256, 256), (1, 1), (2, 3)])
def test_spectral_ops_match_torch_fft(h, w):
    torch.manual_seed(1)
    a, g = torch.randn(2, 4, h, w), torch.randn(2, 4, h, w)
    ref = torch.fft.rfft2(a)
    re, im = rfft2_matmul(a)
    scale = ref.abs().max().item()
    assert (re - ref.real).abs().max() <= 1e-5 * scale + 1e-5
    assert (im - ref.imag).abs().max() <= 1e-5 * scale + 1e-5
    assert (irfft2_matmul(re, im, w) - a).abs().max() <= 1e-5
    out = {m: frequency_sum(a, g, m) for m in ("fft", "fold", "matmul")}
    assert out["fft"].shape == a.shape  # s=(H, W) keeps odd widths
    for m in ("fold", "matmul"):
        assert (out[m] - out["fft"]).abs().max() <= 1e-5


@pytest.mark.parametrize("h,w", [(7, 9), (63, 65), (256, 256)])
def test_fft_modes_agree_on_model(tiny_model, h, w):
    torch.manual_seed(2)
    x = torch.rand(1, 3, h, w)
    outs = {}
    for mode in ("fft", "fold", "matmul"):
        tiny_model.set_fft_mode(mode)
        assert tiny_model.fft_mode == mode
        with torch.no_grad():
            outs[mode] = tiny_model(x)
    assert (outs["fold"] - outs["fft"]).abs().max() <= 1e-5
    assert (outs["matmul"] - outs["fft"]).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["anyir-tiny", "anyir-paper-tiny"])
def test_fft_mode_in_create_and_validation(name):
    m = create(name, fft_mode="matmul")
    paths = [p for p in m.modules() if isinstance(p, FrequencyPath)]
    assert len(paths) == sum(m.config.layout()["encoder"]) + sum(m.config.layout()["decoder"]) + m.config.refine_blocks
    assert {p.fft_mode for p in paths} == {"matmul"}
    m.set_fft_mode("fold")
    assert {p.fft_mode for p in paths} == {"fold"} and m.fft_mode == "fold"
    with pytest.raises(ValueError, match="unknown fft_mode"):
        m.set_fft_mode("dft")
    with pytest.raises(ValueError, match="did you mean 'anyir-tiny'"):
        create("anyir-tyni")


def test_a_nonlinear_frequency_path_refuses_fold(monkeypatch):
    """A network whose spectra are multiplied declares fft_modes without "fold": it cannot be
    built or switched to fold, its fast mode is matmul, and the exporter's auto picks matmul."""
    from anyir_edge.export.formats import ExportError, resolve, resolve_fft

    cls = type(create("anyir-tiny"))
    monkeypatch.setattr(cls, "fft_modes", ("fft", "matmul"))
    m = create("anyir-tiny", fft_mode="matmul")
    assert m.fast_fft_mode() == "matmul"
    with pytest.raises(ValueError, match="not exact for anyir"):
        m.set_fft_mode("fold")
    with pytest.raises(ValueError, match="not exact"):
        create("anyir-tiny", fft_mode="fold")
    assert resolve_fft(resolve("onnx"), None, linear=False) == "matmul"
    assert resolve_fft(resolve("onnx"), None, linear=True) == "fold"
    with pytest.raises(ExportError, match="only for a linear"):
        resolve_fft(resolve("onnx"), "fold", linear=False)


def test_every_parameter_gets_a_gradient(tiny_model):
    tiny_model.train()
    x = torch.rand(2, 3, 16, 24)
    loss = (tiny_model(x) - x.flip(-1)).abs().mean()
    loss.backward()
    missing = [n for n, p in tiny_model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_gatedda_constant_map_has_finite_gradient():
    # the deepest level of a tiny input is a 1x1 map: std over one pixel must not be NaN
    g = GatedDA(8)
    x = torch.randn(1, 8, 1, 1, requires_grad=True)
    g(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="expansion must be 2"):
        GatedDA(8, expansion=2.66)


def test_eval_is_deterministic(tiny_model):
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.equal(tiny_model(x), tiny_model(x))


def test_skip_split_is_interleaved():
    # the attention path must see only even channels: perturbing an odd channel changes the
    # GatedDA input but not the attention input
    blk = DAB(8, 1, get_config("anyir-paper-tiny")).eval()
    seen = {}
    blk.attn.register_forward_hook(lambda m, i, o: seen.__setitem__("attn", i[0].clone()))
    blk.gate.register_forward_hook(lambda m, i, o: seen.__setitem__("gate", i[0].clone()))
    x = torch.randn(1, 8, 8, 8)
    blk(x)
    a0, g0 = seen["attn"], seen["gate"]
    x2 = x.clone()
    x2[:, 3] += 1.0
    blk(x2)
    assert torch.equal(seen["attn"], a0)
    assert not torch.equal(seen["gate"], g0)
    assert torch.equal(seen["gate"][:, [0, 2, 3]], g0[:, [0, 2, 3]])


def test_registry_lists_every_architecture():
    from anyir_edge.models import ARCHITECTURES, get_architecture

    assert {"anyir", "anyir-paper", "promptir", "moce-ir"} <= set(ARCHITECTURES)
    assert {"anyir", "anyir-l", "anyir-tiny", "anyir-paper", "anyir-paper-tiny", "promptir", "moce-ir-s", "moce-ir"} <= set(CONFIGS)
    for name, cfg in CONFIGS.items():
        m = create(name)
        assert type(m).arch == cfg.arch == get_architecture(m).name and m.name == name


def test_a_new_architecture_is_one_folder(tmp_path, monkeypatch):
    """The seam: a package under models/ that exports ARCH and CONFIGS is found by the registry
    (create, detection and checkpoint loading through the descriptor), with no other edit."""
    import textwrap

    import anyir_edge.models as M

    pkg = tmp_path / "toynet"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from torch import nn
        from anyir_edge.models.base import Architecture, NetConfig, RestorationNet, shape_of

        @dataclass(frozen=True)
        class ToyConfig(NetConfig):
            arch = "toynet"
            width: int = 4
            def layout(self):
                return {"width": self.width, "encoder": (0, 0, 0, 0), "decoder": (0, 0, 0), "refine": 0}

        class Toy(RestorationNet):
            arch = "toynet"
            def __init__(self, config=None, fft_mode="fft", name=None):
                super().__init__(config or ToyConfig(), fft_mode, name)
                self.toy_in = nn.Conv2d(3, self.config.width, 3, padding=1)
                self.toy_out = nn.Conv2d(self.config.width, 3, 3, padding=1)
            def forward_padded(self, x):
                return x + self.toy_out(self.toy_in(x))

        ARCH = Architecture(name="toynet", title="a toy", config_cls=ToyConfig, model_cls=Toy,
                            detect=lambda sd: "toy_in.weight" in sd,
                            infer_config=lambda sd: ToyConfig(width=shape_of(sd, "toy_in.weight")[0]))
        CONFIGS = {"toy-8": ToyConfig(width=8)}
    '''))
    monkeypatch.setattr(M, "__path__", [*M.__path__, str(tmp_path)])
    archs, configs = M._discover()
    monkeypatch.setattr(M, "ARCHITECTURES", archs)
    monkeypatch.setattr(M, "CONFIGS", configs)
    import anyir_edge.models.checkpoint as C

    monkeypatch.setattr(C, "ARCHITECTURES", archs)
    monkeypatch.setattr(C, "CONFIGS", configs)
    m = M.create("toy-8")
    assert type(m).arch == "toynet" and M.get_architecture(m).name == "toynet"
    torch.save({"state_dict": {f"net.{k}": v for k, v in m.state_dict().items()}}, tmp_path / "toy.ckpt")
    loaded = C.load_model(tmp_path / "toy.ckpt")
    assert loaded.config.width == 8 and loaded.name == "toy-8"
    x = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        assert torch.equal(loaded(x), m.eval()(x))
