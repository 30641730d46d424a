"""ONNX (and OpenVINO) export: round trips, fft strategies, metadata, certificates, the gate,
and the format table.  Exports run on anyir-tiny (the full config at one small size) with one
thread: the CI machine is shared and oversubscribed threads are very slow there."""
import json

import numpy as np
import onnx
import pytest
from conftest import perturbed, saved_perturbed
import torch

import anyir_edge
from anyir_edge.cli import run
from anyir_edge.export import ExportError, ParityError, export, formats, onnx_export, parity_inputs, verify
from anyir_edge.export.parity import ASSETS_DIR, psnr, ssim
from anyir_edge.models import create
from anyir_edge.runtime import Restorer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return saved_perturbed(tmp_path_factory.mktemp("ckpt"), "tiny-test.safetensors")


@pytest.fixture(scope="module")
def fold_export(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("fold")
    return export(str(ckpt), to="onnx", output=str(out), threads=1, log=lambda m: None)


def reference(model, x):
    m = model.set_fft_mode("fft")
    with torch.inference_mode():
        return m(torch.from_numpy(x)).numpy()


# ------------------------------------------------------------------ round trip
def test_export_writes_model_and_certificate_by_name(fold_export, ckpt):
    assert fold_export.path.name == "tiny-test.onnx" and fold_export.path.is_file()
    assert fold_export.certificate_path.name == "tiny-test.onnx.parity.json"
    assert fold_export.fft == "fold"  # auto -> fold
    leftovers = [p.name for p in fold_export.path.parent.iterdir()
                 if p.name not in ("tiny-test.onnx", "tiny-test.onnx.parity.json")]
    assert leftovers == []  # no temporary files left behind


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 3, 13), (1, 3, 17, 23), (2, 3, 40, 64), (1, 3, 97, 131)])
def test_onnx_round_trip_sizes(fold_export, ckpt, shape):
    """Dynamic batch/H/W at sizes other than the export sample (2x3x64x72), odd sizes
    (reflect padding) and sides shorter than the pad (replicate padding)."""
    model = anyir_edge.load_model(ckpt)
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    r = Restorer.open(fold_export.path, threads=1)
    out = r.forward(x)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, reference(model, x), atol=2e-5)


def test_metadata_present_and_read_back(fold_export):
    m = onnx.load(str(fold_export.path))
    onnx.checker.check_model(m)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["anyir_edge.name"] == "anyir-tiny"
    assert json.loads(meta["anyir_edge.config"]) == json.loads(json.dumps(create("anyir-tiny").config.to_dict()))
    assert meta["anyir_edge.size_multiple"] == "1" and meta["anyir_edge.pad"].startswith("in the graph")
    assert meta["anyir_edge.fft"] == "fold"
    assert meta["anyir_edge.layout"] == "NCHW" and meta["anyir_edge.color"] == "RGB"
    assert meta["anyir_edge.range"] == "0,1" and meta["anyir_edge.dtype"] == "float32"
    assert meta["anyir_edge.version"] == anyir_edge.__version__
    assert "reflect" in meta["anyir_edge.pad"]
    assert meta["anyir_edge.simplifier"] in ("onnxsim", "onnxslim", "none")
    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 17
    assert any(n.op_type == "LayerNormalization" for n in m.graph.node)
    assert not any(n.op_type in ("DFT", "Pad") for n in m.graph.node)  # folded, and no padding inside
    (inp,), (out,) = m.graph.input, m.graph.output
    assert inp.name == "image" and out.name == "restored"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == 3 and isinstance(dims[2], str) and isinstance(dims[3], str)
    # and the runtime reads it back
    r = Restorer.open(fold_export.path, threads=1)
    assert r.name == "anyir-tiny" and r.size_multiple == 1 and r.metadata["anyir_edge.fft"] == "fold"


def test_parity_certificate_fields(fold_export, ckpt):
    cert = json.loads(fold_export.certificate_path.read_text())
    assert cert == json.loads(json.dumps(fold_export.certificate))
    assert cert["passed"] is True and cert["threshold_db"] == 60.0 and cert["precision"] == "fp32"
    assert cert["engine"] == "tiny-test.onnx" and cert["format"] == "onnx" and cert["fft"] == "fold"
    assert "fft_mode='fft'" in cert["reference"]
    # the certificate names the weights it certified, and so does the engine's metadata
    assert cert["weights_sha256"] == anyir_edge.weights_sha256(anyir_edge.load_model(ckpt))
    assert Restorer.open(fold_export.path, threads=1).metadata["anyir_edge.weights_sha256"] == cert["weights_sha256"]
    assert cert["weights_sha256"] != anyir_edge.weights_sha256(perturbed(seed=1))
    s = cert["summary"]
    for k in ("psnr_min", "psnr_mean", "ssim_min", "max_abs_error", "mean_abs_error"):
        assert isinstance(s[k], float)
    assert s["psnr_min"] >= 60 and s["ssim_min"] > 0.9999 and s["max_abs_error"] < 1e-4
    assets = sorted(p.name for p in ASSETS_DIR.glob("*.png"))
    assert len(cert["inputs"]) == 3 * len(assets) >= 12
    assert {r["degradation"] for r in cert["inputs"]} == {"noise", "rain", "haze"}
    assert {r["image"] for r in cert["inputs"]} == set(assets)
    assert [251, 333] in [r["size"] for r in cert["inputs"]]  # the odd size
    for r in cert["inputs"]:
        assert set(r) >= {"image", "degradation", "seed", "size", "psnr", "ssim", "max_abs_error", "mean_abs_error"}


@pytest.mark.parametrize("name", ["anyir-tiny", "anyir", "anyir-paper-tiny", "anyir-paper"])
def test_deploy_form_is_the_same_function(name):
    """The architecture's deploy form used for export: same output, padded widths, original untouched."""
    from anyir_edge.models import get_architecture
    from anyir_edge.models.deploy import DeployGDFN
    from anyir_edge.models.layers import GatedFFN as GDFN

    m = perturbed(name)
    d = get_architecture(m).deploy_copy(m)
    x = torch.rand(1, 3, 24, 40)
    with torch.inference_mode():
        assert torch.allclose(m(x), d(x), atol=2e-6)
    dep = [g for g in d.modules() if isinstance(g, DeployGDFN)]
    assert len(dep) == sum(isinstance(g, GDFN) for g in m.modules()) > 0
    assert not any(isinstance(g, GDFN) for g in d.modules())
    assert all(g.dw_a.out_channels % 8 == 0 and g.dw_a.out_channels >= g.project_out.out_channels for g in dep)


def test_exported_graph_has_no_gdfn_split(fold_export):
    """GDFN's chunk is gone from the graph (no Split in any /ffn/ scope, whose convs are
    there); every depthwise conv wider than 8 channels has a multiple of 8 (onnxruntime's
    NCHWc kernels)."""
    from anyir_edge.models.layers import GatedFFN

    g = onnx.load(str(fold_export.path)).graph
    ffn = [n.op_type for n in g.node if "/ffn/" in n.name]
    assert ffn.count("Conv") == 5 * sum(isinstance(b, GatedFFN) for b in perturbed().modules())  # 2 in, 2 dw, 1 out
    assert "Split" not in ffn and "Slice" not in ffn
    groups = [a.i for n in g.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    assert all(gr % 8 == 0 for gr in groups if gr > 8)


def test_assets_are_small_real_crops():
    files = list(ASSETS_DIR.glob("*.png"))
    assert len(files) >= 4 and sum(f.stat().st_size for f in files) < 1_000_000
    inputs = parity_inputs()
    a = [x for n, d, s, x in inputs if d == "noise"][0]
    b = [x for n, d, s, x in parity_inputs() if d == "noise"][0]
    assert np.array_equal(a, b)  # fixed seeds


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.random((40, 50, 3)).astype(np.float32)
    assert psnr(a, a) == 200.0 and ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a + 0.01, 0, 1)
    assert 38 < psnr(a, b) < 41
    assert ssim(a, rng.random((40, 50, 3))) < 0.2


# ------------------------------------------------------------- fft strategies
def test_fft_matmul_parity_via_cli(ckpt, tmp_path, capsys):
    out = tmp_path / "mm.onnx"
    rc = run("anyir-export", lambda argv: __import__("anyir_edge.cli.export", fromlist=["main"]).main(argv),
             ["--to", "onnx", "--model", str(ckpt), "--fft", "matmul", "--output", str(out), "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    cert = json.loads((tmp_path / "mm.onnx.parity.json").read_text())
    assert cert["fft"] == "matmul" and cert["passed"] and cert["summary"]["psnr_min"] >= 60
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "DFT" not in ops and {"Cos", "Sin"} <= ops  # DFT matrices built from the runtime shape
    assert onnx.load(str(out)).metadata_props  # metadata survives the CLI path too


@pytest.mark.slow
def test_fft_dft_parity_dynamo(tmp_path):
    """--fft dft keeps ONNX DFT ops (dynamo exporter).  A shallow model keeps the (slow)
    dynamo trace short; the DFT path is the same in every block."""
    model = perturbed(blocks=(1, 1, 1, 1), refine_blocks=1)
    res = export(model, to="onnx", output=str(tmp_path), fft="dft", threads=1,
                 inputs=parity_inputs(max_side=128)[:4], log=lambda m: None)
    m = onnx.load(str(res.path))
    assert any(n.op_type == "DFT" for n in m.graph.node)
    assert res.certificate["exporter"] == "dynamo" and res.certificate["opset"] >= 17
    assert res.certificate["summary"]["psnr_min"] >= 60
    x = np.random.default_rng(2).random((1, 3, 37, 50), dtype=np.float32)  # not the export sample size
    np.testing.assert_allclose(Restorer.open(res.path, threads=1).forward(x), reference(model, x), atol=5e-5)


def test_full_anyir_config_exports(tmp_path):
    model = perturbed("anyir")
    res = export(model, to="onnx", output=str(tmp_path / "full.onnx"), threads=1,
                 inputs=parity_inputs(max_side=96)[:1], log=lambda m: None)
    assert res.path.name == "full.onnx" and res.certificate["passed"]
    assert json.loads(onnx_meta(res.path)["anyir_edge.config"])["dim"] == 28
    assert onnx_meta(res.path)["anyir_edge.arch"] == "anyir"


def onnx_meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


# ------------------------------------------------------------------ the gate
def _corrupt(src, dst, scale=0.5):
    m = onnx.load(str(src))
    init = max(m.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = onnx.numpy_helper.to_array(init).copy()
    arr += scale * np.random.default_rng(0).standard_normal(arr.shape).astype(arr.dtype)
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    onnx.save(m, str(dst))


def test_gate_fails_on_corrupted_engine(fold_export, ckpt, tmp_path):
    bad = tmp_path / "bad.onnx"
    _corrupt(fold_export.path, bad)
    cert = verify(bad, anyir_edge.load_model(ckpt), inputs=parity_inputs(max_side=96), threads=1)
    assert cert["passed"] is False and cert["summary"]["psnr_min"] < 60


def test_export_rejects_engine_below_gate(fold_export, ckpt, tmp_path, monkeypatch):
    """An export whose engine misses the gate never lands at NAME.onnx."""
    def corrupted_trace(model, path, fft, opset=None, dynamic=True, pad_in_graph=False):
        _corrupt(fold_export.path, path)
        return "torchscript", 17

    monkeypatch.setattr(onnx_export, "trace", corrupted_trace)
    (tmp_path / "tiny-test.onnx").write_bytes(b"previous good engine")
    with pytest.raises(ParityError, match="below the 60 dB gate") as e:
        export(str(ckpt), to="onnx", output=str(tmp_path), threads=1, inputs=parity_inputs(max_side=96),
               log=lambda m: None)
    assert "\n" not in str(e.value)
    assert (tmp_path / "tiny-test.onnx").read_bytes() == b"previous good engine"  # untouched
    assert (tmp_path / "tiny-test.rejected.onnx").is_file()
    cert = json.loads((tmp_path / "tiny-test.rejected.onnx.parity.json").read_text())
    assert cert["passed"] is False and cert["rejected"] is True
    assert not (tmp_path / "tiny-test.onnx.parity.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny-test.onnx", "tiny-test.rejected.onnx", "tiny-test.rejected.onnx.parity.json"]


def test_cli_gate_exit_code(fold_export, ckpt, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnx_export, "trace", lambda model, path, fft, opset=None, dynamic=True, pad_in_graph=False:
                        (_corrupt(fold_export.path, path), ("torchscript", 17))[1])
    from anyir_edge.cli import export as cli_export

    rc = run("anyir-export", cli_export.main, ["--model", str(ckpt), "-o", str(tmp_path), "--threads", "1",
                                               "--min-psnr", "60"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith("anyir-export: error: parity") and not (tmp_path / "tiny-test.onnx").exists()


# ------------------------------------------------------------- OpenVINO
def test_openvino_from_verified_onnx(fold_export, ckpt, tmp_path):
    pytest.importorskip("openvino")
    from anyir_edge.export.openvino_export import convert

    meta = onnx_meta(fold_export.path)
    xml = tmp_path / "tiny-test.xml"
    extra = convert(fold_export.path, xml, meta)
    assert xml.is_file() and extra[0].is_file() and extra[0].suffix == ".bin"
    r = Restorer.open(xml, threads=1)
    assert r.backend.kind == "openvino" and r.name == "anyir-tiny" and r.metadata["anyir_edge.fft"] == "fold"
    cert = verify(xml, anyir_edge.load_model(ckpt), inputs=parity_inputs(max_side=128), threads=1)
    assert cert["passed"] and cert["summary"]["psnr_min"] >= 60


# --------------------------------------------------------- the format table
@pytest.mark.parametrize("to,name", [("onnx", "onnx"), ("ONNX", "onnx"), ("openvino", "openvino"), ("ov", "openvino"),
                                     ("trt", "trt"), ("engine", "trt"), ("tensorrt", "trt"), ("TensorRT", "trt")])
def test_format_aliases(to, name):
    assert formats.resolve(to).name == name


@pytest.mark.parametrize("typo,hint", [("onxx", "onnx"), ("openvin", "openvino"), ("tensort", "trt"), ("engin", "trt")])
def test_format_typos_suggest(typo, hint):
    with pytest.raises(ExportError, match=f"did you mean '{hint}'"):
        formats.resolve(typo)


def test_format_table_rows():
    names = {f.name: f for f in formats.FORMATS}
    assert set(names) == {"onnx", "openvino", "trt", "executorch", "litert", "coreml"}
    assert names["trt"].gpu and not names["onnx"].gpu and names["onnx"].suffix == ".onnx"
    assert names["executorch"].suffix == ".pte" and "dft" not in names["executorch"].fft
    assert names["litert"].suffix == ".tflite" and {"sizes", "half", "int8", "calib", "search"} <= names["litert"].flags
    assert "max_side" not in names["litert"].flags and "int8" not in names["coreml"].flags
    assert "dft" in names["onnx"].fft and "dft" not in names["trt"].fft


@pytest.mark.parametrize("kwargs,match", [
    ({"to": "onnx", "timing_cache": "x"}, "--timing-cache is not supported by --to onnx"),
    ({"to": "onnx", "workspace": 4}, "--workspace is not supported by --to onnx"),
    ({"to": "openvino", "min_shape": "1x3x8x8"}, "--min-shape is not supported by --to openvino"),
    ({"to": "trt", "fft": "dft"}, "--fft dft is not supported by --to trt"),
    ({"to": "onnx", "fft": "fold2"}, "did you mean 'fold'"),
    ({"to": "onnx", "opset": 16}, "opset >= 17"),
    ({"to": "trt"}, r"pip install anyir-edge\[gpu\]"),
    ({"to": "engine", "half": True}, "unavailable"),
])
def test_refusals_before_any_work(kwargs, match, tmp_path):
    with pytest.raises(ExportError, match=match) as e:
        export("does-not-exist.safetensors", output=str(tmp_path), **kwargs)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_errors_are_one_line(capsys, tmp_path):
    from anyir_edge.cli import export as cli_export

    for argv in (["--to", "onxx"], ["--to", "tensorrt"], ["--to", "onnx", "--workspace", "4"],
                 ["--model", str(tmp_path / "missing.safetensors")]):
        assert run("anyir-export", cli_export.main, argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("anyir-export: error: "), err


def test_a_new_target_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    """The seam: a target module (its format row, its own option, prepare, build) plus one
    REGISTRY line, and the pipeline, the format table and anyir-export's options take it."""
    import sys
    import types
    from dataclasses import dataclass

    from anyir_edge.cli.export import build_parser
    from anyir_edge.export import targets
    from anyir_edge.export.formats import Format
    from anyir_edge.export.targets.base import Built, Target

    @dataclass
    class PlainSettings:
        shout: bool
        precision: str = "fp32"

    class PlainTarget(Target):
        format = Format("plain", ("raw",), ".onnx", frozenset({"fft", "shout"}), ("fold",), False, "a test target")
        options = {"shout": [(("--shout",), dict(action="store_const", const=True, help="say it louder"))]}

        def prepare(self, opts, fft):
            return PlainSettings(bool(opts.get("shout")))

        def build(self, ctx, s):
            path = ctx.work / f"{ctx.stem}.onnx"
            exporter, opset = onnx_export.trace(ctx.net, str(path), ctx.fft)
            onnx_export.finalize(str(path), onnx_export.metadata(ctx.net, ctx.fft, exporter, opset, ctx.source))
            return Built(path, [], {"shout": s.shout}, "fp32, plain")

    mod = types.ModuleType("anyir_test_targets.plain")
    mod.TARGET = PlainTarget()
    monkeypatch.setitem(sys.modules, "anyir_test_targets.plain", mod)
    monkeypatch.setitem(targets.REGISTRY, "plain", "anyir_test_targets.plain")
    assert formats.resolve("raw").name == "plain" and "plain" in [f.name for f in formats.FORMATS]
    assert build_parser().parse_args(["--to", "plain", "--shout"]).shout is True
    res = export(perturbed(), to="plain", shout=True, output=str(tmp_path) + "/", threads=1,
                 inputs=parity_inputs(max_side=96)[:1], log=lambda m: None)
    assert res.certificate["passed"] and res.certificate["format"] == "plain" and res.certificate["shout"] is True
    with pytest.raises(ExportError, match="--shout is not supported by --to onnx"):
        export(perturbed(), to="onnx", shout=True, output=str(tmp_path / "x") + "/")


def test_litert_without_its_toolchain_is_refused_in_one_line(monkeypatch, tmp_path):
    """CI does not install litert-torch (tests/test_litert.py runs where it is): the target says
    what to install, before any work, whether or not it is installed here."""
    from anyir_edge.export import litert_export

    monkeypatch.setattr(litert_export, "missing", lambda: ["litert-torch", "ai-edge-litert"])
    with pytest.raises(ExportError, match=r"--to litert needs litert-torch and ai-edge-litert: pip install "
                                          r"anyir-edge\[litert\]") as e:
        export("anyir-paper-tiny", to="tflite", output=str(tmp_path), sizes="224")
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []
