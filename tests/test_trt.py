"""TensorRT (issue #6): what runs without TensorRT or a GPU (the compatibility check, settings
validation, FP32-layer selection, calibration batches, engine/environment comparison, profile
tiling, onnxruntime provider options, the CLI), the builder's control flow against a *fake*
``tensorrt`` module (this checks our calls, not TensorRT), and GPU tests marked ``gpu`` that
skip here.  Nothing in this file verifies TensorRT itself."""
import json
import os
import sys
import types

import numpy as np
import onnx
import pytest
from conftest import int8_weight_absmax, perturbed
import torch
from onnx import TensorProto, helper

import anyir_edge
from anyir_edge.cli import run
from anyir_edge.export import PARITY_GATES_DB, ExportError, export, formats
from anyir_edge.export import trt as T
from anyir_edge.runtime import EngineError, Restorer
from anyir_edge.runtime.backends import backend_for
from anyir_edge.runtime.backends.onnxruntime_backend import _ort_providers
from anyir_edge.runtime.backends.tensorrt_backend import profile_tiles, run_within_profile


def _have_trt_gpu():
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(not _have_trt_gpu(), reason="needs TensorRT and an NVIDIA GPU (none on this machine)")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return perturbed()


@pytest.fixture(scope="module")
def ckpt(tiny, tmp_path_factory):
    p = tmp_path_factory.mktemp("ckpt") / "tiny-trt.safetensors"
    anyir_edge.save_model(tiny, p)
    return p


@pytest.fixture(scope="module")
def matmul_onnx(tiny, tmp_path_factory):
    p = tmp_path_factory.mktemp("mm") / "mm.onnx"
    T.export_onnx_for_trt(tiny, p, "matmul")
    return p


def tiny_graph(tmp_path, op="Relu", opset=17, dims=("batch", 3, "height", "width"), name="g.onnx", extra_nodes=(),
               domain_ops=()):
    """A small ONNX graph with AnyIR's I/O names and metadata (fast to build, no exporter)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("restored", TensorProto.FLOAT, list(dims))
    nodes = list(extra_nodes) or [helper.make_node(op, ["image"], ["restored"], name=f"/{op}")]
    g = helper.make_graph(nodes, "g", [x], [y])
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domain_ops]
    m = helper.make_model(g, opset_imports=opsets)
    m.metadata_props.add(key="anyir_edge.size_multiple", value="8")
    p = tmp_path / name
    onnx.save(m, str(p))
    return p


def dft_graph(tmp_path, opset=17):
    """image -> Unsqueeze(-1) -> DFT(axis 3, onesided) -> ReduceSum(last) -> Slice: contains an ONNX DFT node."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [-1])
    nodes = [
        helper.make_node("Unsqueeze", ["image", "axes"], ["u"], name="/Unsqueeze"),
        helper.make_node("DFT", ["u"], ["f"], name="/DFT", axis=3, onesided=0),
        helper.make_node("ReduceSum", ["f", "axes"], ["restored"], name="/ReduceSum", keepdims=0),
    ]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("restored", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    g = helper.make_graph(nodes, "dft", [x], [y], initializer=[axes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.metadata_props.add(key="anyir_edge.size_multiple", value="8")
    p = tmp_path / "dft.onnx"
    onnx.save(m, str(p))
    return p


# ------------------------------------------------------------- the operator table
def test_op_table_is_data_with_sources():
    t = T.load_op_table()
    ids = {s["id"] for s in t["sources"]}
    assert {"onnx-tensorrt-10.15", "tensorrt-11.2-release"} <= ids
    assert all(s["url"].startswith("https://") for s in t["sources"])
    for v in t["versions"].values():
        assert set(v["source"]) <= ids
    key, v10 = T.resolve_version("10.x")
    assert key == t["default"] == "10.x"
    assert "DFT" in v10["unsupported"] and "LayerNormalization" in v10["supported"]
    assert v10["opset"] == (9, 20) and v10["weak_typing"]
    _, v112 = T.resolve_version("11.2")
    assert "DFT" in v112["supported"] and not v112["weak_typing"]
    assert "DFT" in T.resolve_version("11.1")[1]["unsupported"]
    assert T.resolve_version("10.8.0.43")[0] == "10.x" and T.resolve_version("11.5")[0] == "11.2"
    with pytest.raises(ExportError, match="no operator table for TensorRT 9.x"):
        T.resolve_version("9.0")
    # one copy of the table: the package's; docs/tensorrt.md documents it
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert not [f for f in os.listdir(os.path.join(root, "docs")) if f.endswith((".json", ".csv"))]
    assert "anyir_edge/export/data/trt_onnx_ops.json" in open(os.path.join(root, "docs", "tensorrt.md")).read()


# ------------------------------------------------------------------- the check
def test_matmul_graph_passes_for_10x_with_fp16_profile(matmul_onnx):
    rep = T.check_onnx(matmul_onnx, "10.x", T.TrtSettings(fp16=True, max_shape="1x3x512x512"))
    assert rep.ok, [p.line() for p in rep.problems]
    assert rep.trt_version == "10.x" and rep.opset == 17
    assert {"LayerNormalization", "MatMul", "Cos", "Sin"} <= set(rep.op_counts) and "DFT" not in rep.op_counts
    assert any(p.level == "info" and "INT64" in p.message for p in rep.problems)  # info only
    assert "compatible with TensorRT 10.x" in rep.summary()


def test_matmul_graph_fp16_on_11x_goes_through_a_typed_graph(matmul_onnx, tmp_path):
    rep = T.check_onnx(matmul_onnx, "11.2", T.TrtSettings(fp16=True))
    assert rep.ok and any("flags were removed" in p.message and p.level == "info" for p in rep.problems)
    assert T.needs_typed_graph(T.TrtSettings(fp16=True), "11.2.1") and not T.needs_typed_graph(T.TrtSettings(), "11.2")
    assert not T.needs_typed_graph(T.TrtSettings(int8=True), "10.8.0") and not T.needs_typed_graph(T.TrtSettings(fp16=True), None)
    # FP16: float16 weights, float32 I/O, the LayerNorm/softmax/reduction block list kept in float32
    import onnx

    rep16 = T.typed_onnx(matmul_onnx, tmp_path / "m16.onnx", T.TrtSettings(fp16=True))
    m16 = onnx.load(str(tmp_path / "m16.onnx"))
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m16.graph.initializer)
    assert any("LayerNorm" in n for n in rep16["fp32_nodes"])
    chk = T.check_onnx(tmp_path / "m16.onnx", "11.2", T.TrtSettings(fp16=True))
    assert chk.ok and any("typed graph (float16)" in p.message for p in chk.problems), [p.line() for p in chk.problems]


def test_typed_int8_graph_is_symmetric_qdq_on_convs(matmul_onnx, tmp_path):
    import onnx
    from onnx import numpy_helper

    rep = T.typed_onnx(matmul_onnx, tmp_path / "m8.onnx", T.TrtSettings(int8=True, calib_max_images=1))
    m8 = onnx.load(str(tmp_path / "m8.onnx"))
    q = [n for n in m8.graph.node if n.op_type == "QuantizeLinear"]
    assert q and rep["quantized_nodes"] and all("Conv" in n for n in rep["quantized_nodes"])
    inits = {t.name: t for t in m8.graph.initializer}
    zps = [inits[n.input[2]] for n in m8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
           and len(n.input) > 2 and n.input[2] in inits]
    assert zps and all(z.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(z).any() for z in zps)
    assert "symmetric INT8 activations" in rep["scheme"]
    assert int8_weight_absmax(m8) > 64 and not rep["reduce_range"]  # full 8-bit weights: GPUs do not saturate
    consts = {t.name for t in m8.graph.initializer}
    dq_weights = {n.output[0] for n in m8.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in consts}
    assert not any(n.op_type == "MatMul" and set(n.input) & dq_weights for n in m8.graph.node)  # no INT8 MatMul weights
    assert T.check_onnx(tmp_path / "m8.onnx", "11.2", T.TrtSettings(int8=True)).ok


def test_dft_graph_fails_for_10x_passes_for_11_2(tmp_path):
    p = dft_graph(tmp_path)
    rep = T.check_onnx(p, "10.x")
    assert not rep.ok
    assert any("DFT" in e.message and "before 11.2" in e.message and "--fft fold" in e.message for e in rep.errors)
    assert not T.check_onnx(p, "11.1").ok
    rep = T.check_onnx(p, "11.2")
    assert rep.ok and any(p.level == "info" and "FFTPlugin" in p.message for p in rep.problems)


@pytest.mark.parametrize("kwargs,match", [
    ({"opset": 21}, "opset 21 is outside TensorRT 10.x's range 9-20"),
    ({"op": "Unique"}, "Unique x1: not supported by TensorRT 10.x"),
    ({"op": "MyOp"}, "MyOp x1: not in TensorRT 10.x's operator table"),
    ({"domain_ops": ("com.microsoft",)}, "custom ops"),
    ({"dims": (1, 3, 64, 64)}, "input dim 2 is fixed at 64 but the profile asks"),
    ({"dims": ("batch", 3, "h")}, "rank 3"),
])
def test_check_flags_problems(tmp_path, kwargs, match):
    rep = T.check_onnx(tiny_graph(tmp_path, **kwargs), "10.x")
    assert not rep.ok and any(match in e.message for e in rep.errors), [p.line() for p in rep.problems]


def test_check_restrictions(tmp_path):
    ln = helper.make_node("LayerNormalization", ["image", "s", "b"], ["restored", "mean"], name="/ln", axis=-1)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("restored", TensorProto.FLOAT, ["n", 3, "h", "w"])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [1], [1.0]), helper.make_tensor("b", TensorProto.FLOAT, [1], [0.0])]
    m = helper.make_model(helper.make_graph([ln], "g", [x], [y], initializer=inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    rep = T.check_onnx(m, "10.x")
    assert any("only the first output Y" in e.message for e in rep.errors)
    rs = helper.make_node("Resize", ["image", "", "scales"], ["restored"], name="/rs", mode="cubic")
    m = helper.make_model(helper.make_graph([rs], "g", [x], [y], initializer=[
        helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])]), opset_imports=[helper.make_opsetid("", 17)])
    assert any("mode 'cubic' unsupported" in e.message for e in T.check_onnx(m, "10.x").errors)


def test_check_needs_valid_profile(tmp_path):
    rep = T.check_onnx(tiny_graph(tmp_path), "10.x", T.TrtSettings(min_shape="1x3x12x12"))
    assert not rep.ok and "multiples of the model's size multiple 8" in rep.errors[0].message


# ------------------------------------------------------------------- the CLI
def _cli(argv):
    from anyir_edge.cli import export as cli_export

    return run("anyir-export", cli_export.main, argv)


def test_cli_check_only_fold_from_checkpoint(ckpt, capsys):
    """--check-only from a checkpoint: the fold ONNX is exported to a temp dir and checked."""
    assert _cli(["--to", "trt", "--check-only", "--model", str(ckpt)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("tiny-trt.onnx (fft=fold): compatible with TensorRT 10.x")


def test_cli_check_only_onnx_paths(matmul_onnx, tmp_path, capsys):
    assert _cli(["--to", "trt", "--check-only", "--model", str(matmul_onnx)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mm.onnx: compatible with TensorRT 10.x")
    dft = dft_graph(tmp_path)
    assert _cli(["--to", "tensorrt", "--check-only", "--model", str(dft)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "dft.onnx: NOT compatible with TensorRT 10.x: 1 problem(s)"
    assert [line for line in out if line.startswith("error: DFT")]
    assert _cli(["--to", "trt", "--check-only", "--trt-version", "11.2", "--model", str(dft)]) == 0
    capsys.readouterr()
    assert _cli(["--to", "trt", "--check-only", "--trt-version", "8.6", "--model", str(dft)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no operator table for TensorRT 8.x" in err[0]
    assert _cli(["--to", "onnx", "--check-only", "--model", str(dft)]) == 1
    assert "for --to trt" in capsys.readouterr().err


def test_cli_trt_without_gpu_is_one_line(ckpt, tmp_path, capsys):
    if _have_trt_gpu():
        pytest.skip("this machine has TensorRT and a GPU")
    assert _cli(["--to", "trt", "--model", str(ckpt), "-o", str(tmp_path), "--fp16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install anyir-edge[gpu]" in err[0] and "unavailable" in err[0]
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------- settings
def test_settings_defaults_and_gates():
    s = T.validate_settings(T.TrtSettings(), 8)
    assert s.min_shape == (1, 3, 8, 8) and s.opt_shape == (1, 3, 512, 512) and s.max_shape == (1, 3, 1024, 1024)
    assert s.precision == "fp32" and T.TrtSettings(fp16=True).precision == "fp16"
    assert T.TrtSettings(fp16=True, int8=True).precision == "int8"
    assert PARITY_GATES_DB == {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}
    assert T.validate_settings(T.TrtSettings(min_shape="1x3x16x32", opt_shape=[1, 3, 64, 64]), 16).opt_shape == (1, 3, 64, 64)


@pytest.mark.parametrize("kw,match", [
    ({"min_shape": "1x3x64"}, "expected 4 dimensions"),
    ({"min_shape": "1x3xaxb"}, "expected NxCxHxW"),
    ({"opt_shape": "1x3x100x100"}, "multiples of the model's size multiple 8"),
    ({"max_shape": "1x1x512x512"}, "3 channels"),
    ({"min_shape": "1x3x512x512", "opt_shape": "1x3x256x256"}, "need min <= opt <= max"),
    ({"opt_shape": "4x3x64x64"}, r"profile N: need min <= opt <= max, got 1 / 4 / 1"),
    ({"workspace_mb": 0}, "--workspace 0"),
    ({"int8": True, "calib": " "}, "empty folder name"),
    ({"calib": "x"}, "--calib is only used with --int8"),
    ({"int8": True, "calib": "/no/such/folder"}, "no such folder"),
])
def test_settings_refused(kw, match):
    with pytest.raises(ExportError, match=match) as e:
        T.validate_settings(T.TrtSettings(**kw), 8)
    assert "\n" not in str(e.value)


def test_calibration_folder_checks(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ExportError, match="no images"):
        T.validate_settings(T.TrtSettings(int8=True, calib=str(empty)))
    f = tmp_path / "file.png"
    f.write_bytes(b"x")
    with pytest.raises(ExportError, match="not a folder"):
        T.validate_settings(T.TrtSettings(int8=True, calib=str(f)))
    zero = tmp_path / "zero"
    zero.mkdir()
    (zero / "a.png").write_bytes(b"")
    with pytest.raises(ExportError, match="none of its 1 image files can be decoded"):
        T.validate_settings(T.TrtSettings(int8=True, calib=str(zero)))
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0)
        try:
            with pytest.raises(ExportError, match="not readable"):
                T.validate_settings(T.TrtSettings(int8=True, calib=str(locked)))
        finally:
            os.chmod(locked, 0o755)


def test_export_validates_before_availability(tmp_path):
    """Bad settings are reported even on a machine without TensorRT/GPU; nothing is written."""
    with pytest.raises(ExportError, match="multiples of the model's size multiple 8"):
        export("does-not-exist.safetensors", to="trt", output=str(tmp_path), min_shape="1x3x7x7")
    with pytest.raises(ExportError, match="no such folder"):
        export("does-not-exist.safetensors", to="trt", output=str(tmp_path), int8=True, calib=str(tmp_path / "nope"))
    with pytest.raises(ExportError, match="--workspace is not supported by --to onnx"):
        export("does-not-exist.safetensors", to="onnx", output=str(tmp_path), workspace=4)
    assert list(tmp_path.iterdir()) == []


def test_format_row_accepts_trt_flags():
    row = formats.resolve("trt")
    assert {"half", "int8", "calib", "min_shape", "opt_shape", "max_shape", "workspace", "timing_cache"} <= row.flags
    assert row.issue is None and row.fft == ("fold", "matmul")


# ------------------------------------------------------ precision constraints
@pytest.mark.parametrize("name,typ,want", [
    ("/enc1/enc1.0/attn_norm/LayerNormalization", "NORMALIZATION", True),
    ("/enc1/enc1.0/attn/Softmax", "SOFTMAX", True),
    ("/enc1/enc1.0/gate/ReduceMean_1", "REDUCE", True),
    ("/enc1/enc1.0/attn/ReduceL2", "LayerType.REDUCE", True),
    ("/enc1/enc1.0/gate/Pow", "ELEMENTWISE", True),
    ("/enc1/enc1.0/gate/Sqrt", "UNARY", True),
    ("/enc1/enc1.0/attn_norm/LayerNormalization_decomposed_sub", "ELEMENTWISE", True),
    ("/enc1/enc1.0/attn/qkv/Conv", "CONVOLUTION", False),
    ("/enc1/enc1.0/attn/MatMul", "MATRIX_MULTIPLY", False),
    ("/enc1/enc1.0/attn_norm/Transpose", "SHUFFLE", False),
    ("/enc1/enc1.0/attn/Shape_2", "SHAPE", False),
    ("/enc1/enc1.0/attn_norm/LayerNormalization_scale", "CONSTANT", False),
])
def test_keep_fp32(name, typ, want):
    assert T.keep_fp32(name, typ) is want


# ------------------------------------------------------------- calibration
def test_calibration_reader(tmp_path):
    import cv2

    from anyir_edge.export import calibration as C

    d = tmp_path / "calib"
    d.mkdir()
    red = np.zeros((30, 50, 3), np.uint8)
    red[..., 2] = 255  # BGR red
    cv2.imwrite(str(d / "a.png"), red)
    cv2.imwrite(str(d / "b.jpg"), np.full((64, 20, 3), 128, np.uint8))
    cv2.imwrite(str(d / "c.png"), np.full((16, 16), 65535, np.uint16))
    (d / "d.png").write_bytes(b"corrupt")  # skipped
    crops = list(C.clean_crops(d, 16, 24))
    assert len(crops) == 3 and all(c.shape == (16, 24, 3) and c.dtype == np.float32 for c in crops)
    a = crops[0]
    assert a[..., 0].min() > 0.99 and a[..., 1].max() < 0.01 and a[..., 2].max() < 0.01  # RGB order, [0, 1]
    assert np.allclose(crops[2], 1.0)  # 16-bit gray scaled
    assert len(list(C.clean_crops(d, 16, 24, limit=2))) == 2
    batches = list(C.batched([np.full(2, i) for i in range(3)], 2))
    assert [b.tolist() for b in batches] == [[[0, 0], [1, 1]], [[2, 2], [0, 0]]]  # last batch filled from the start


def test_trt_calibration_is_degraded_like_the_other_targets(tmp_path):
    """TensorRT's calibrator is fed the same degraded crops as ONNX Runtime / NNCF calibration
    (one reader, one recipe), not clean photos."""
    from anyir_edge import degradations as D
    from anyir_edge.export import calibration as C
    from anyir_edge.export import precision as P

    batches = list(C.calibration_batches(C.builtin_calibration_folder(), (2, 3, 64, 64), limit=2))
    samples, desc = P.calibration_samples(None, size=64, max_images=2)
    flat = np.concatenate(batches)
    assert flat.shape == (2 * len(D.ORDER), 3, 64, 64) and desc["samples"] == len(flat)
    assert np.array_equal(flat, np.concatenate(samples))
    clean = [c.transpose(2, 0, 1) for c in C.clean_crops(C.builtin_calibration_folder(), 64, 64, limit=2)]
    for i, x in enumerate(flat):
        ref, kind = clean[i // len(D.ORDER)], D.ORDER[i % len(D.ORDER)]
        if kind == "rain":  # light rain may leave a small crop without a streak; it only ever adds
            assert (x >= ref - 1e-6).all()
        else:
            assert np.abs(x - ref).mean() > 2e-3, kind


def test_int8_without_calib_uses_builtin_crops():
    s = T.validate_settings(T.TrtSettings(int8=True), 8)
    assert s.int8 and s.calib is None


def test_calibrator_with_fake_base_class(tmp_path):
    """Control flow of the entropy calibrator (a fake base class; CPU tensors): batches out, then None,
    cache read back; not a TensorRT calibration."""
    class Base:
        def __init__(self):
            pass

    fake = types.SimpleNamespace(IInt8EntropyCalibrator2=Base)
    batches = [np.zeros((1, 3, 8, 8), np.float32), np.ones((1, 3, 8, 8), np.float32)]
    feeder = T.CalibrationFeeder(batches, 1, tmp_path / "m.calib.cache")
    cal = T.entropy_calibrator(fake, feeder, device="cpu")
    assert isinstance(cal, Base) and cal.get_batch_size() == 1
    assert cal.read_calibration_cache() is None
    p1 = cal.get_batch(["image"])
    assert isinstance(p1[0], int) and cal._buf.sum() == 0
    cal.get_batch(["image"])
    assert cal._buf.sum() == 3 * 64 and cal.get_batch(["image"]) is None and feeder.served == 2
    cal.write_calibration_cache(b"TRT-calib-cache")
    assert cal.read_calibration_cache() == b"TRT-calib-cache"


# ------------------------------------------------------ engine compatibility
BUILT = {"tensorrt": "10.8.0.43", "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}


def test_engine_compatibility():
    assert T.engine_compatibility(BUILT, dict(BUILT)) == []
    why = T.engine_compatibility(BUILT, {**BUILT, "tensorrt": "10.9.0.34"})
    assert why == ["built with TensorRT 10.8.0.43, this machine has TensorRT 10.9.0.34"]
    why = T.engine_compatibility(BUILT, {**BUILT, "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    assert len(why) == 2 and "built on NVIDIA A100" in why[0] and "compute capability 8.0" in why[1]
    why = T.engine_compatibility(BUILT, {"tensorrt": None, "gpu": None, "compute_capability": None})
    assert "pip install anyir-edge[gpu]" in why[0] and "no CUDA GPU" in why[1]


def test_runtime_opens_engine_suffixes_and_refuses_clearly(tmp_path, monkeypatch):
    assert backend_for("m.engine", None) == "tensorrt" and backend_for("m.plan", None) == "tensorrt"
    assert backend_for("m.onnx", "trt") == "tensorrt"
    eng = tmp_path / "m.engine"
    with pytest.raises(EngineError, match="no such TensorRT engine file"):
        Restorer.open(eng)
    eng.write_bytes(b"not really an engine")
    with pytest.raises(EngineError, match="no m.trt.json beside it"):
        Restorer.open(eng)
    side = {"environment": BUILT, "metadata": {"anyir_edge.size_multiple": "8"}, "settings": {"precision": "fp16"}}
    T.sidecar_path(eng).write_text(json.dumps(side))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(EngineError, match=r"TensorRT is not installed: pip install anyir-edge\[gpu\]") as e:
        Restorer.open(eng)
    assert "\n" not in str(e.value)
    with pytest.raises(EngineError, match="needs a .engine file"):
        Restorer.open(tmp_path / "m.onnx", backend="tensorrt")
    with pytest.raises(EngineError, match="torch backend needs a checkpoint"):
        Restorer.open(tmp_path / "m.plan", backend="torch")


def test_runtime_refuses_engine_from_another_gpu(tmp_path, monkeypatch):
    """With a fake tensorrt module and a faked CUDA device: the version/GPU check runs before
    deserialisation and names both sides."""
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"x")
    T.sidecar_path(eng).write_text(json.dumps({"environment": BUILT, "metadata": {}}))
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.9.0.34"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA GeForce RTX 4090")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 9))
    with pytest.raises(EngineError) as e:
        Restorer.open(eng)
    msg = str(e.value)
    assert "TensorRT 10.8.0.43, this machine has TensorRT 10.9.0.34" in msg and "RTX 4090" in msg
    assert msg.endswith("rebuild it on this machine with anyir-export --to trt")


# ----------------------------------------------------- profile tiling (numpy)
def test_run_within_profile_tiles_batches_and_refuses():
    rng = np.random.default_rng(0)
    calls = []

    def identity(x):
        calls.append(x.shape)
        return x.copy()

    mn, mx = (1, 3, 16, 16), (2, 3, 64, 48)
    x = rng.random((1, 3, 40, 40), dtype=np.float32)
    assert np.array_equal(run_within_profile(x, identity, mn, mx), x) and calls == [(1, 3, 40, 40)]
    calls.clear()
    x = rng.random((3, 3, 136, 104), dtype=np.float32)  # batch > 2, H > 64, W > 48
    y = run_within_profile(x, identity, mn, mx, overlap=16)
    np.testing.assert_allclose(y, x, atol=1e-6)  # blending weights sum to one
    assert all(s[0] <= 2 and s[2] <= 64 and s[3] <= 48 and s[2] % 8 == 0 and s[3] % 8 == 0 for s in calls)
    assert len(profile_tiles(136, 104, 64, 48, 16)) == 3 * 3
    with pytest.raises(EngineError, match="below the engine's minimum profile shape 16x16"):
        run_within_profile(np.zeros((1, 3, 8, 32), np.float32), identity, mn, mx)
    calls.clear()
    out = run_within_profile(np.ones((1, 3, 16, 16), np.float32), identity, (2, 3, 16, 16), mx)
    assert out.shape == (1, 3, 16, 16) and calls == [(2, 3, 16, 16)]  # padded to min batch, cropped back


# ------------------------------------------------ onnxruntime provider options
def test_ort_provider_options_from_settings(tmp_path):
    s = T.validate_settings(T.TrtSettings(fp16=True, engine_cache_dir=str(tmp_path / "ec"), workspace_mb=2048,
                                          timing_cache=str(tmp_path / "tc.bin")))
    o = T.ort_provider_options(s, device_id=1)
    t = o["TensorrtExecutionProvider"]
    assert t["trt_fp16_enable"] is True and t["trt_engine_cache_enable"] is True
    assert t["trt_engine_cache_path"] == str(tmp_path / "ec") and t["trt_max_workspace_size"] == 2048 << 20
    assert t["trt_timing_cache_path"] == str(tmp_path) and t["device_id"] == 1
    assert t["trt_profile_min_shapes"] == "image:1x3x8x8" and t["trt_profile_max_shapes"] == "image:1x3x1024x1024"
    assert o["CUDAExecutionProvider"] == {"device_id": 1}
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    provs = _ort_providers("cuda:1", every, "fold", o)
    assert provs[0] == ("CUDAExecutionProvider", {"device_id": 1})
    provs = _ort_providers("tensorrt", every, "fold", o)
    assert provs[0][0] == "TensorrtExecutionProvider" and provs[0][1]["trt_fp16_enable"] is True
    assert provs[0][1]["device_id"] == 0  # the device argument decides the device


# -------------------------------------------- builder control flow (fake TensorRT)
class _FakeLayer:
    def __init__(self, name, typ, dtype="float32"):
        self.name, self.type = name, types.SimpleNamespace(name=typ)
        self.num_outputs, self._dtype, self.precision, self.out_types = 1, dtype, None, {}

    def get_output(self, i):
        return types.SimpleNamespace(dtype=self._dtype)

    def set_output_type(self, i, t):
        self.out_types[i] = t


def _fake_trt(version="10.8.0.43"):
    rec = {}
    layers = [_FakeLayer("/a/attn_norm/LayerNormalization", "NORMALIZATION"), _FakeLayer("/a/attn/Softmax", "SOFTMAX"),
              _FakeLayer("/a/gate/ReduceMean", "REDUCE"), _FakeLayer("/a/qkv/Conv", "CONVOLUTION"),
              _FakeLayer("/a/attn/Shape_2", "SHAPE", "int64"), _FakeLayer("/a/gate/ReduceSum_idx", "REDUCE", "int32")]

    class Network:
        num_layers = len(layers)

        def get_layer(self, i):
            return layers[i]

        def get_input(self, i):
            return types.SimpleNamespace(name="image")

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            rec["profile"] = (name, mn, opt, mx)

    class Cache:
        def serialize(self):
            return b"timing-cache-bytes"

    class Config:
        def __init__(self):
            rec["flags"] = []

        def set_memory_pool_limit(self, pool, size):
            rec["workspace"] = (pool, size)

        def add_optimization_profile(self, p):
            rec["profiles_added"] = rec.get("profiles_added", 0) + 1

        def create_timing_cache(self, data):
            rec["timing_cache_in"] = data
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            rec["ignore_mismatch"] = ignore_mismatch

        def get_timing_cache(self):
            return Cache()

        def set_flag(self, f):
            rec["flags"].append(f)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            rec["network_flags"] = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"serialized-engine"

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            rec["parsed_bytes"] = len(data)
            return True

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    fake = types.SimpleNamespace(
        __version__=version, Logger=Logger, Builder=Builder, OnnxParser=Parser,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        BuilderFlag=types.SimpleNamespace(FP16="FP16", INT8="INT8", OBEY_PRECISION_CONSTRAINTS="OBEY"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=3),
        float32="float32", float16="float16")
    return fake, rec, layers


def test_builder_control_flow_with_fake_tensorrt(tmp_path, monkeypatch):
    """Our calls into the TensorRT API (fake module): the profile equals the validated settings,
    FP16 + OBEY_PRECISION_CONSTRAINTS are set, exactly the LayerNorm/softmax/reduce layers with
    float outputs are forced to FP32, the timing cache is read and written.  Not a TensorRT build."""
    fake, rec, layers = _fake_trt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    onnx_path = tiny_graph(tmp_path)
    tc = tmp_path / "timing.cache"
    tc.write_bytes(b"old-cache")
    s = T.validate_settings(T.TrtSettings(fp16=True, min_shape="1x3x16x16", opt_shape="1x3x256x256",
                                          max_shape="2x3x512x768", workspace_mb=1024, timing_cache=str(tc)), 8)
    info = T.build_engine(onnx_path, tmp_path / "m.engine", s)
    assert rec["profile"] == ("image", (1, 3, 16, 16), (1, 3, 256, 256), (2, 3, 512, 768))
    assert rec["profiles_added"] == 1 and rec["network_flags"] == 0
    assert rec["workspace"] == ("WORKSPACE", 1024 << 20)
    assert rec["flags"] == ["FP16", "OBEY"] and rec["timing_cache_in"] == b"old-cache"
    assert [l.precision for l in layers] == ["float32", "float32", "float32", None, None, None]
    assert layers[0].out_types == {0: "float32"} and layers[3].out_types == {}
    assert (tmp_path / "m.engine").read_bytes() == b"serialized-engine"
    assert tc.read_bytes() == b"timing-cache-bytes"
    assert info["fp32_layers"] == 3 and info["tensorrt"] == "10.8.0.43"
    T.write_sidecar(tmp_path / "m.engine", s, info, {"anyir_edge.size_multiple": "8"})
    side = json.loads((tmp_path / "m.trt.json").read_text())
    assert side["settings"]["precision"] == "fp16" and side["settings"]["max_shape"] == [2, 3, 512, 768]
    assert side["build"]["fp32_layers"] == 3 and set(side["environment"]) >= {"tensorrt", "gpu", "compute_capability"}


def test_builder_on_trt11_needs_a_typed_graph_and_sets_no_flags(tmp_path, monkeypatch):
    fake, rec, layers = _fake_trt("11.2.1")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    s = T.validate_settings(T.TrtSettings(fp16=True), 8)
    with pytest.raises(ExportError, match="needs a typed graph"):
        T.build_engine(tiny_graph(tmp_path), tmp_path / "m.engine", s)
    T.build_engine(tiny_graph(tmp_path), tmp_path / "m.engine", T.validate_settings(T.TrtSettings(), 8))
    assert rec["flags"] == [] and rec["network_flags"] == 0  # FP32 on 11.x: no precision flags
    info = T.build_engine(tiny_graph(tmp_path), tmp_path / "m.engine", s, typed=True)
    assert rec["flags"] == [] and rec["network_flags"] == 1 << 3  # STRONGLY_TYPED, no FP16 flag
    assert all(l.precision is None and not l.out_types for l in layers)  # no layer constraints in a typed build
    assert info["typing"].startswith("strong") and info["fp32_layers"] == 0


# ------------------------------------------------------------ on a GPU only
@pytest.mark.gpu
@needs_gpu
def test_gpu_trt_export_fp32_parity(ckpt, tmp_path):  # pragma: no cover - needs TensorRT + an NVIDIA GPU
    res = export(str(ckpt), to="trt", output=str(tmp_path), max_shape="1x3x512x512", opt_shape="1x3x256x256",
                 timing_cache=str(tmp_path / "timing.cache"), log=lambda m: None)
    assert res.path.suffix == ".engine" and res.certificate["passed"] and res.certificate["precision"] == "fp32"
    assert res.certificate["summary"]["psnr_min"] >= 60
    side = json.loads((tmp_path / "tiny-trt.trt.json").read_text())
    assert side["parity"]["passed"] and side["environment"]["gpu"]
    r = Restorer.open(res.path)
    x = np.random.default_rng(0).random((1, 3, 600, 90), dtype=np.float32)  # H above the profile: tiled
    assert r.forward(x).shape == x.shape


@pytest.mark.gpu
@needs_gpu
def test_gpu_trt_export_fp16_gate(ckpt, tmp_path):  # pragma: no cover - needs TensorRT + an NVIDIA GPU
    res = export(str(ckpt), to="trt", output=str(tmp_path), half=True, max_shape="1x3x512x512", log=lambda m: None)
    assert res.certificate["precision"] == "fp16" and res.certificate["threshold_db"] == 40.0
    assert res.certificate["passed"]
