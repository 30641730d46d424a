"""The mobile deploy form (issue #22): each rewrite equals what it replaces, and AnyIR's whole
mobile form equals the trained model (its exact frequency path), for both LayerNorm kinds, with
and without biases, and with BatchNorm statistics far from the identity."""

import pytest
import torch
from torch import nn

from anyir_edge.models import create, get_architecture
from anyir_edge.models.layers import LayerNorm2d, channel_attention, downsample, upsample
from anyir_edge.models.mobile import (
    ChannelAttentionB1,
    SplitDepthwise,
    fast_depthwise,
    fold_affine_into_conv,
    norm_parts,
    pixel_shuffle_deconv,
    strided_downsample,
    transposed_upsample,
)


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    mse = float(((a.double() - b.double()) ** 2).mean())
    peak = float(b.abs().max()) ** 2
    return 10 * torch.log10(torch.tensor(peak / max(mse, 1e-300))).item()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_strided_downsample_is_conv_then_pixel_unshuffle():
    body = downsample(12)
    x = torch.randn(1, 12, 16, 24)
    assert psnr_db(strided_downsample(body)(x), body(x)) > 120


def test_transposed_upsample_is_conv_then_pixel_shuffle():
    body = upsample(12)
    x = torch.randn(1, 12, 8, 10)
    assert psnr_db(transposed_upsample(body)(x), body(x)) > 120


def test_pixel_shuffle_deconv_is_bit_exact():
    y = torch.randn(1, 20, 7, 9)
    with torch.no_grad():
        assert torch.equal(pixel_shuffle_deconv(5)(y), nn.PixelShuffle(2)(y))


@pytest.mark.parametrize("bias", [False, True])
def test_split_depthwise_equals_the_7x7_kernel(bias):
    conv = nn.Conv2d(5, 5, 7, padding=3, groups=5, bias=bias)
    x = torch.randn(1, 5, 19, 13)
    split = fast_depthwise(conv)
    assert isinstance(split, SplitDepthwise) and all(p.kernel_size == (7, 3) for p in split.parts)
    assert psnr_db(split(x), conv(x)) > 120
    small = nn.Conv2d(5, 5, 5, padding=2, groups=5)
    assert fast_depthwise(small) is small  # single-pass already


@pytest.mark.parametrize("kernel,bias", [(3, True), (3, False), (5, True)])
def test_narrow_output_conv_equals_the_convolution(kernel, bias):
    from anyir_edge.models.mobile import narrow_output_conv

    torch.manual_seed(0)
    conv = nn.Conv2d(12, 3, kernel, padding=kernel // 2, bias=bias)
    x = torch.randn(1, 12, 11, 9)
    with torch.no_grad():
        assert torch.allclose(narrow_output_conv(conv)(x), conv(x), atol=1e-5)
    with pytest.raises(ValueError, match="stride 1"):
        narrow_output_conv(nn.Conv2d(12, 3, 3, stride=2, padding=1))


def test_split_depthwise_refuses_what_it_cannot_rewrite():
    with pytest.raises(ValueError):
        SplitDepthwise(nn.Conv2d(4, 4, 7, padding=3, stride=2, groups=4))


@pytest.mark.parametrize("heads", [1, 4])
def test_batch_one_attention_equals_restormers(heads):
    q, k, v = (torch.randn(1, 16, 12, 20) for _ in range(3))
    t = torch.rand(heads, 1, 1) + 0.5
    ours = ChannelAttentionB1(16, heads)(q, k, v, t)
    assert psnr_db(ours, channel_attention(q, k, v, heads, t)) > 110


def test_batch_one_attention_keeps_normalizes_floor_for_a_zero_channel():
    q, k, v = (torch.randn(1, 8, 8, 8) for _ in range(3))
    q[:, 3] = 0  # F.normalize divides by max(|q|, 1e-12): a zero row stays zero, no NaN
    t = torch.ones(2, 1, 1)
    ours = ChannelAttentionB1(8, 2)(q, k, v, t)
    assert torch.isfinite(ours).all()
    assert psnr_db(ours, channel_attention(q, k, v, 2, t)) > 110


def test_batch_one_attention_norms_from_means_equal_the_gram_diagonal():
    q, k = torch.randn(1, 12, 10, 14), torch.randn(1, 12, 10, 14)
    att = ChannelAttentionB1(12, 3)
    (mq, mk), (gq, gk) = att.norms_from_means(q, k), att.norms_from_gram(q.reshape(3, 4, -1), k.reshape(3, 4, -1))
    assert mq.shape == gq.shape == (3, 4, 1) and mk.shape == gk.shape == (3, 1, 4)
    assert torch.allclose(mq, gq, rtol=1e-5) and torch.allclose(mk, gk, rtol=1e-5)


def test_batch_one_attention_traced_with_symbolic_sizes_stays_right_at_other_sizes():
    """With H and W symbolic the norms come from the Gram matrix: a norm from the mean times a
    size that export had fixed would be silently wrong at every other size."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention, self.t = ChannelAttentionB1(8, 2), torch.rand(2, 1, 1) + 0.5

        def forward(self, x):
            return self.attention(x, 2 * x, x * x, self.t)

    net = Net().eval()
    h, w = torch.export.Dim("h", min=1, max=16), torch.export.Dim("w", min=1, max=16)
    ep = torch.export.export(net, (torch.randn(1, 8, 16, 24),), dynamic_shapes=({2: 4 * h, 3: 4 * w},))
    targets = {str(n.target) for n in ep.graph.nodes}
    assert not any("mean" in t for t in targets)
    for size in ((8, 40), (32, 4)):
        x = torch.randn(1, 8, *size)
        with torch.no_grad():
            assert psnr_db(ep.module()(x), net(x)) > 110


@pytest.mark.parametrize("centred", [True, False])
def test_channel_norm_with_the_affine_in_the_next_conv_is_layernorm(centred):
    ln = LayerNorm2d(12, bias=centred)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        if centred:
            ln.bias.normal_()
    conv = nn.Conv2d(6, 10, 1, bias=True)
    rows = torch.arange(0, 12, 2)
    norm, w, b = norm_parts(ln)
    x = torch.randn(1, 12, 9, 7) * 3 + 1
    ref = conv(ln(x)[:, rows])
    assert psnr_db(fold_affine_into_conv(conv, w, b, rows)(norm(x)), ref) > 110


def _randomised(name="anyir-tiny", **overrides):
    m = create(name, **overrides)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 if p.dim() > 1 else torch.rand_like(p) + 0.5)
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2)
    return m.eval()


@pytest.mark.parametrize("overrides", [
    {},
    {"layernorm": "biasfree", "bias": True},
    {"dim": 12, "blocks": [1, 1, 1, 2], "heads": [1, 2, 3, 4], "refine_blocks": 1},
])
def test_anyir_mobile_form_equals_the_model(overrides):
    m = _randomised(**overrides)
    arch = get_architecture(m)
    assert arch.deploy_form("mobile") == "mobile"
    mob = arch.deploy_copy(m, "mobile")
    kinds = {type(x).__name__ for x in mob.modules()}
    assert "MobileBlock" in kinds and not kinds & {"BatchNorm2d", "PixelShuffle", "PixelUnshuffle", "LayerNorm2d"}
    for hw in ((32, 40), (24, 16)):
        x = torch.rand(1, 3, *hw)
        with torch.no_grad():
            assert psnr_db(mob.forward_padded(x), m.forward_padded(x)) > 100
    assert all(p1 is not p2 for p1, p2 in zip(m.parameters(), mob.parameters()))  # the model is untouched


def test_anyir_fusion_regrouped_by_what_it_multiplies_equals_the_three_slot_projection():
    from anyir_edge.models.anyir.mobile import fused_projection, fused_projection_pair

    m = _randomised(bias=True)
    attn = next(x for x in m.modules() if type(x).__name__ == "DegradationAttention")
    with torch.no_grad():
        attn.lam.fill_(0.3)
        half = attn.project_out.out_channels // 2
        a, g = torch.randn(1, half, 9, 7), torch.randn(1, half, 9, 7)
        three = fused_projection(attn)(torch.cat([a + torch.sigmoid(g), g + torch.sigmoid(a), a + g], dim=1))
        m1, m2 = fused_projection_pair(attn)
        ag = torch.cat([a, g], dim=1)
        assert torch.allclose(m1(ag) + m2(torch.sigmoid(ag)), three, atol=1e-5)


def test_anyir_mobile_block_concatenates_only_a_and_g():
    """Per block one concatenation of C channels (the attention's and GatedDA's halves); the form
    had one of c + n channels before W_gate and one of 3C/2 before the fusion (XNNPACK copies each)."""
    m = _randomised()
    mob = get_architecture(m).deploy_copy(m, "mobile")
    block = next(x for x in mob.modules() if type(x).__name__ == "MobileBlock")
    dim = block.fuse_ag.out_channels
    graph = torch.export.export(block, (torch.rand(1, dim, 16, 16),)).graph
    cats = [n.meta["val"].shape[1] for n in graph.nodes if n.op == "call_function" and n.target == torch.ops.aten.cat.default]
    assert cats == [dim]


def test_architectures_without_a_mobile_form_fall_back_to_the_cpu_form():
    m = create("anyir-paper-tiny")
    arch = get_architecture(m)
    assert arch.mobile is None and arch.deploy_form("mobile") == "cpu"
    with pytest.raises(ValueError, match="deploy form"):
        arch.deploy_copy(m, "phone")


def test_patch_spectral_product_as_strided_convolutions_equals_the_fft():
    """MoCE-IR's expert product irfft2(rfft2(q) * rfft2(k)) per p x p patch, with q and k
    zero-padded to multiples of p: the strided-convolution DFTs against torch.fft, for sizes that
    are and are not multiples of p."""
    from anyir_edge.models.moce_ir.mobile import PatchSpectralProduct
    from anyir_edge.models.moce_ir.model import PatchDFT, from_patches, to_patches

    for p in (4, 8, 32):
        prod = PatchSpectralProduct(PatchDFT(p))
        for h, w in ((2 * p, 3 * p), (p + 3, 2 * p - 5)):
            q, k = torch.randn(1, 3, h, w), torch.randn(1, 3, h, w)
            qp, kp = to_patches(q.double(), p), to_patches(k.double(), p)
            ref = from_patches(torch.fft.irfft2(torch.fft.rfft2(qp) * torch.fft.rfft2(kp), s=(p, p)), h, w)
            assert psnr_db(prod(q, k), ref) > 110


def test_bilinear_resize_as_interpolation_matrices_equals_interpolate():
    """PromptIR's prompt resize to the feature map's run-time size in the mobile form: two matrix
    products with interpolation matrices built by tensor operations, against
    ``F.interpolate(mode="bilinear", align_corners=False)`` for up- and down-sampling, equal and
    odd sizes."""
    from anyir_edge.models.promptir.mobile import bilinear_matrix

    for s in (1, 5, 16):
        grid = torch.arange(s, dtype=torch.float32)
        prompt = torch.randn(1, 4, s, s)
        for h, w in ((s, s), (3, 40), (37, 2), (128, 96)):
            ry = bilinear_matrix(torch.ones(1, 1, h, 1), grid)
            rx = bilinear_matrix(torch.ones(1, 1, w, 1), grid)
            ours = ry @ prompt @ rx.transpose(2, 3)
            ref = torch.nn.functional.interpolate(prompt, size=(h, w), mode="bilinear", align_corners=False)
            assert ours.shape == ref.shape
            assert torch.allclose(ours, ref, atol=1e-5), (s, h, w, (ours - ref).abs().max())


def _authors_mobile_form(name: str, target: str | None = None):
    """The authors' golden fixture ``tests/fixtures/<name>.ckpt`` loaded as our model, its mobile
    form (for the phone ``target``), the mobile form's module kinds, and the fixture's inputs one
    image at a time."""
    from pathlib import Path

    from safetensors.torch import load_file

    from anyir_edge import load_model

    fixtures = Path(__file__).parent / "fixtures"
    m = load_model(fixtures / f"{name}.ckpt")
    arch = get_architecture(m)
    assert arch.deploy_form("mobile") == "mobile"
    mob = arch.deploy_copy(m, "mobile", target=target)
    io = load_file(str(fixtures / f"{name}.io.safetensors"))
    inputs = [io["input"][i:i + 1] for i in range(io["input"].shape[0])]
    return m, mob, {type(x).__name__ for x in mob.modules()}, inputs


@pytest.mark.parametrize("target", [None, "litert"])
@pytest.mark.parametrize("tag", ["d4-spread", "d4-top2-bias-biasfree"])
def test_moce_ir_mobile_form_equals_the_authors_model(tag, target):
    """MoCE-IR's mobile form (encoder / decoder blocks, experts with their patch DFTs as strided
    convolutions, resamplers; for LiteRT the inverse DFT along H without grouped transposed
    convolutions) computes what the authors' network computes: the golden fixtures of
    tests/test_moce_ir.py (their checkpoint layout; with and without biases, both LayerNorm kinds,
    3 and 4 experts), one image at a time, at the fixtures' sizes and at sizes that are not
    multiples of the experts' patches."""
    m, mob, kinds, inputs = _authors_mobile_form(f"moce-ir-authors-{tag}", target)
    assert {"MobileTransformerBlock", "MobileDecoderBlock", "MobileExpert", "PatchSpectralProduct"} <= kinds
    assert ("RowsInverse" in kinds) == (target == "litert")
    assert not kinds & {"EncoderBlock", "DecoderBlock", "ModExpert", "FFTAttention", "PixelShuffle",
                        "PixelUnshuffle", "LayerNorm2d", "GatedFFN"}
    inputs += [torch.rand(1, 3, 20, 36), torch.rand(1, 3, 72, 40)]
    for x in inputs:
        with torch.no_grad():
            assert psnr_db(mob(x), m(x)) > 110
    assert all(p1 is not p2 for p1, p2 in zip(m.parameters(), mob.parameters()))  # the model is untouched


def test_rows_inverse_equals_the_grouped_transposed_convolution_it_replaces():
    from anyir_edge.models.moce_ir.mobile import RowsInverse

    k, p = 3, 4
    t = torch.nn.ConvTranspose2d(k * p, k, (p, 1), stride=(p, 1), groups=k, bias=False)
    x = torch.randn(5, k * p, 6, 7)
    with torch.no_grad():
        assert torch.allclose(RowsInverse(t)(x), t(x), atol=1e-5)
    with pytest.raises(ValueError, match="kernel = stride"):
        RowsInverse(torch.nn.ConvTranspose2d(k * p, k, (p, 1), stride=(p, 1), groups=1, bias=False))


def test_moce_ir_mobile_form_does_not_tile_its_dft_constants():
    """The patch DFTs' weights are shared by every channel: MoCE-IR-S's mobile form carries about
    as many numbers as its CPU form (13.0M vs 11.5M), where per-channel grouped convolutions made
    it 76.4M (64.1M of them DFT matrices)."""
    m = create("moce-ir-s").eval()
    mob = get_architecture(m).deploy_copy(m, "mobile")

    def numbers(mod):
        return sum(t.numel() for t in [*mod.parameters(), *mod.buffers()])

    assert numbers(mob) < 1.2 * numbers(m)
    products = [x for x in mob.modules() if type(x).__name__ == "PatchSpectralProduct"]
    assert products
    for prod in products:
        p, k = prod.p, prod.p // 2 + 1
        assert numbers(prod) == 4 * k * p * p + 4 * k * p


def test_half_compute_keeps_the_attention_float32_where_fp16_overflows():
    """``--to executorch --half``: the attention's sums over all H*W pixels overflow float16 (its
    largest value is 65504) on a 512x512 image; :class:`HalfCompute` keeps those modules
    (``FP16_UNSAFE``) float32 and everything else float16, behind float32 input and output."""
    from anyir_edge.export.mobile_export import HalfCompute
    from anyir_edge.models.mobile import FP16_UNSAFE

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention, self.conv = ChannelAttentionB1(8, 2), nn.Conv2d(8, 8, 1)
            self.temperature = nn.Parameter(torch.ones(2, 1, 1))

        def forward(self, x):
            y = self.conv(x)
            return self.attention(y, y, y, self.temperature)

    net = Block().eval()
    x = torch.full((1, 8, 512, 512), 0.7)  # |q|^2 = 0.49 * 262144 > 65504 per channel
    with torch.no_grad():
        want = net(x)
        naive = Block().eval()
        naive.load_state_dict(net.state_dict())
        naive = naive.half()
        assert not torch.isfinite(naive(x.half())).all()  # what an all-FP16 program would compute
        half = HalfCompute(net, keep=FP16_UNSAFE).eval()
        got = half(x)
    assert half.module.conv.weight.dtype == torch.float16
    assert half.module.attention.module.eye.dtype == torch.float32
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert psnr_db(got, want) > 45


def test_half_compute_keeps_moce_ir_patch_spectral_products_float32():
    """MoCE-IR's patch spectral product multiplies two spectra: on a 32 x 32 patch of 0.5 their DC
    terms are 512 and the product 262 144, past float16's 65504 (MoCE-IR-S with random weights
    reaches ~2.7e5 on a photo). The product is one of ``FP16_UNSAFE`` and stays float32 in a
    float16 program; its output (the circular convolution, 256 here) fits float16."""
    import copy

    from anyir_edge.export.mobile_export import HalfCompute
    from anyir_edge.models.mobile import FP16_UNSAFE
    from anyir_edge.models.moce_ir.mobile import PatchSpectralProduct
    from anyir_edge.models.moce_ir.model import PatchDFT

    class Expert(nn.Module):
        def __init__(self):
            super().__init__()
            self.product = PatchSpectralProduct(PatchDFT(32))

        def forward(self, x):
            return self.product(x, x)

    net, x = Expert().eval(), torch.full((1, 2, 32, 32), 0.5)
    with torch.no_grad():
        want = net(x)
        assert not torch.isfinite(copy.deepcopy(net).half()(x.half())).all()  # all-FP16
        got = HalfCompute(net, keep=FP16_UNSAFE).eval()(x)
    assert got.dtype == torch.float32 and torch.allclose(got, want, rtol=1e-3)
    assert torch.allclose(want, torch.full_like(want, 256.0), rtol=1e-4)


@pytest.mark.parametrize("target", [None, "coreml"])
@pytest.mark.parametrize("tag", ["d6", "d2-bias-biasfree"])
def test_promptir_mobile_form_equals_the_authors_model(tag, target):
    """PromptIR's mobile form (Restormer blocks, prompt blocks, resamplers rewritten; for Core ML
    the prompt resize as interpolation matrices) computes what the authors' network computes: the
    golden fixtures of tests/test_promptir.py (their checkpoint layout, both LayerNorm kinds, with
    and without biases), one image at a time."""
    m, mob, kinds, inputs = _authors_mobile_form(f"promptir-authors-{tag}", target)
    assert {"MobileTransformerBlock", "MobilePromptGen"} <= kinds
    assert all(g.resize_matrices == (target == "coreml") for g in mob.modules() if type(g).__name__ == "MobilePromptGen")
    assert not kinds & {"Block", "PromptGen", "PixelShuffle", "PixelUnshuffle", "LayerNorm2d", "GatedFFN"}
    # against our model (which tests/test_promptir.py proves equal to theirs) one image at a time:
    # the d2 fixture is ill-conditioned at 2 channels, so float32 at batch 1 vs batch 2 already
    # differs at 94 dB, and its float64 output at 96 dB from their float32 one
    inputs.append(torch.rand(1, 3, 20, 36))  # another size: the prompts are resized to each feature map
    for x in inputs:
        with torch.no_grad():
            assert psnr_db(mob(x), m(x)) > 110


def test_quiet_keeps_the_converters_output_and_names_it_when_a_step_fails(capfd, tmp_path, monkeypatch):
    """What a converter writes (Python prints, log records, warnings, and C++ logs written to
    file descriptor 2 directly, like TensorFlow's absl lines under litert-torch) stays off the
    terminal; a failing step's one-line error names the file that keeps it."""
    import logging
    import os
    import warnings

    from anyir_edge.export import ExportError, mobile_export

    monkeypatch.setattr(mobile_export, "CONVERTER_LOG", tmp_path / "converter.log")
    with mobile_export.quiet():
        print("python print")
        os.write(2, b"I0000 c++ log line\n")
        logging.getLogger("some.converter").warning("a log record")
        warnings.warn("a warning")
    os.write(2, b"after\n")
    out, err = capfd.readouterr()
    assert out == "" and err == "after\n"

    with pytest.raises(ExportError) as e:
        with mobile_export.quiet():
            os.write(1, b"F0000 why it failed\n")
            raise ExportError("LiteRT conversion failed (boom)")
    assert str(e.value) == f"LiteRT conversion failed (boom) (the converter's output: {tmp_path / 'converter.log'})"
    assert "why it failed" in (tmp_path / "converter.log").read_text()
    with pytest.raises(ExportError, match=r"^nothing written$"):  # nothing to keep: the error as it was
        with mobile_export.quiet():
            raise ExportError("nothing written")
    os.write(1, b"stdout back\n")
    assert capfd.readouterr().out == "stdout back\n"
