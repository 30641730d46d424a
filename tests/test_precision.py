"""Reduced precision (issue #8): FP16 keeps its sensitive nodes in FP32 (and finds more by
bisection), INT8 is calibrated, reported and refused when bad, calibration folders are
checked, the quality gate can fail.  anyir-tiny with random weights, small inputs, one thread."""
import json
import os

import cv2
import numpy as np
import onnx
import pytest
from conftest import int8_weight_absmax, perturbed, saved_perturbed
import torch

import anyir_edge
from anyir_edge.cli import run
from anyir_edge.export import PARITY_GATES_DB, ExportError, ParityError, export, parity_inputs
from anyir_edge.export import precision as P


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return saved_perturbed(tmp_path_factory.mktemp("ckpt"), "tiny.safetensors")


@pytest.fixture(scope="module")
def small_inputs():
    return parity_inputs(max_side=128)[:3]


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    from anyir_edge.export.parity import load_assets

    for name, rgb in load_assets()[:2]:
        cv2.imwrite(str(d / name), (rgb[..., ::-1] * 255).round().astype(np.uint8))
    return d


@pytest.fixture(scope="module")
def fp16_export(ckpt, small_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16")
    return export(str(ckpt), to="onnx", half=True, output=str(out), threads=1, inputs=small_inputs, log=lambda m: None)


def _float_types(model):
    m = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*m.graph.value_info, *m.graph.input, *m.graph.output)}
    types.update({t.name: t.data_type for t in m.graph.initializer})
    return types


def test_gates_are_the_issue_values():
    assert PARITY_GATES_DB == {"fp32": 60.0, "fp16": 45.0, "int8": 35.0}
    assert P.QUALITY_DROP_DB == {"fp16": 0.3, "int8": 1.0}


# ------------------------------------------------------------------------ FP16
def test_fp16_keeps_sensitive_nodes_fp32(fp16_export):
    res = fp16_export
    assert res.path.name == "tiny-fp16.onnx"  # never overwrites the fp32 tiny.onnx
    m = onnx.load(str(res.path))
    meta = {p.key: p.value for p in m.metadata_props}
    kept = set(json.loads(meta["anyir_edge.fp16_fp32_nodes"]))
    assert meta["anyir_edge.precision"] == "fp16"
    types = _float_types(m)
    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    sensitive = [n for n in m.graph.node if n.op_type in ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2",
                                                          "Pow", "Sqrt")]
    assert len(sensitive) > 100
    for n in sensitive:
        assert n.name in kept
        assert types.get(n.input[0]) == F32 and types.get(n.output[0]) == F32, n.name
    # the q/k normalisation (x / max(||x||, eps)) too
    divs = [n for n in m.graph.node if n.op_type == "Div" and "/attn/" in n.name]
    assert divs and all(n.name in kept and types.get(n.output[0]) == F32 for n in divs)
    # ... while the convolutions really are FP16, and the I/O stays float32
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert sum(types.get(n.input[1]) == F16 for n in convs) > 0.9 * len(convs)
    assert m.graph.input[0].type.tensor_type.elem_type == F32 and m.graph.output[0].type.tensor_type.elem_type == F32
    cert = res.certificate
    assert cert["precision"] == "fp16" and cert["threshold_db"] == 45.0 and cert["passed"]
    assert cert["summary"]["psnr_min"] >= 45
    assert os.path.getsize(res.path) < 0.7 * 6.2e6  # about half the fp32 file


def test_fp16_bisection_finds_overflowing_nodes(tmp_path):
    """A controlled overflow: q and k of the first attention scaled by 1e5 leave the FP32 model
    unchanged (q and k are L2-normalised) but overflow FP16 (max 65504) on their way to the
    normalisation; the rule block list alone fails (NaN: 0 dB), bisection keeps a short window of
    that attention's nodes in FP32.  One block per level: the bisection is the same, on fewer nodes."""
    model = perturbed(seed=1, blocks=(1, 1, 1, 1), refine_blocks=1)
    attn = model.encoder_level1[0].attn
    c = attn.qkv.weight.shape[0] // 3
    with torch.no_grad():
        attn.qkv.weight[: 2 * c] *= 1e5
    inputs = parity_inputs(max_side=96)[:1]
    fp32 = export(model, to="onnx", output=str(tmp_path / "fp32.onnx"), threads=1, inputs=inputs, log=lambda m: None)
    probe = P.ParityProbe(model, inputs, threads=1)
    logs = []
    rep = P.convert_fp16(fp32.path, tmp_path / "h.onnx", probe, 45.0, search=False)
    assert probe(tmp_path / "h.onnx") < 45  # the rule list alone: overflow
    rep = P.convert_fp16(fp32.path, tmp_path / "h.onnx", probe, 45.0, search=True, max_evals=20, log=logs.append)
    assert rep["fp32_nodes_bisected"], logs
    assert all(n.startswith("/encoder_level1/encoder_level1.0/attn/") for n in rep["fp32_nodes_bisected"])  # that block
    assert len(rep["fp32_nodes_bisected"]) < 40
    assert probe(tmp_path / "h.onnx") >= 45
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "h.onnx")).metadata_props}
    assert json.loads(meta["anyir_edge.fp16_fp32_nodes_bisected"]) == rep["fp32_nodes_bisected"]


def test_bisect_keep_finds_a_passing_window():
    cand = [f"n{i}" for i in range(100)]
    need = {"n37", "n41"}
    calls = []

    def passes(kept):
        calls.append(len(kept))
        return need <= set(kept)

    win = P.bisect_keep(cand, passes)
    assert need <= set(win) and win == cand[37:42] and len(calls) <= 16
    assert P.bisect_keep(cand, lambda kept: False) is None


# ------------------------------------------------------------------------ INT8
def test_int8_static_calibrated_and_reported(ckpt, small_inputs, calib_dir, tmp_path):
    """Static QDQ on a two-image folder; plus the quality gate on a two-image lq/gt folder."""
    qset = tmp_path / "pairs"
    for sub in ("gt", "lq"):
        (qset / sub).mkdir(parents=True)
    from anyir_edge.degradations import degrade
    from anyir_edge.export.parity import load_assets

    for name, rgb in load_assets()[1:3]:
        crop = rgb[:64, :64]
        cv2.imwrite(str(qset / "gt" / name), (crop[..., ::-1] * 255).round().astype(np.uint8))
        lq = degrade(crop, "noise", rng=0, params={"noise": {"sigma": 25}})
        cv2.imwrite(str(qset / "lq" / name), (lq[..., ::-1] * 255).round().astype(np.uint8))
    logs = []
    res = export(str(ckpt), to="onnx", int8=True, calib=str(calib_dir), output=str(tmp_path), threads=1,
                 inputs=small_inputs, data=str(tmp_path), quality_sets=[str(qset)], log=logs.append)
    assert res.path.name == "tiny-int8.onnx" and not any("warning" in m for m in logs)
    cert = res.certificate
    assert cert["precision"] == "int8" and cert["threshold_db"] == 35.0 and cert["summary"]["psnr_min"] >= 35
    rp = cert["reduced_precision"]
    assert rp["method"] == "static" and rp["calibration"]["images"] == 2
    assert rp["calibration"]["degradations"] == list(anyir_edge.degradations.ORDER)
    m = onnx.load(str(res.path))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    convs = {n.name for n in m.graph.node if n.op_type == "Conv"}
    assert rp["quantized_nodes"] and set(rp["quantized_nodes"]) <= convs | {n.name for n in m.graph.node
                                                                          if n.op_type == "MatMul"}
    meta = {p.key: p.value for p in m.metadata_props}
    assert json.loads(meta["anyir_edge.int8_quantized_nodes"]) == rp["quantized_nodes"]
    # the rule's float nodes: the image's reader, the output's writer, the gated FFN products' consumers
    rule = json.loads(meta["anyir_edge.int8_float_nodes_by_rule"])
    assert rule == rp["float_nodes_by_rule"] and "/patch_embed/proj/Conv" in rule and "/output/Conv" in rule
    assert sum(v == "input is a product of two activations" for v in rule.values()) == sum(
        "ffn/project_out" in n.name for n in m.graph.node if n.op_type == "Conv")
    assert not set(rule) & set(rp["quantized_nodes"]) and set(rule) <= set(rp["float_nodes"])
    # 7-bit weights (no u8 x s8 saturation on CPUs without VNNI), and the certificate says which CPU checked it
    assert 32 < int8_weight_absmax(m) <= 64 and meta["anyir_edge.int8_weight_bits"] == "7" and rp["reduce_range"]
    assert cert["host_cpu"]["model"] and isinstance(cert["host_cpu"]["int8_isa"], list)
    # per-channel weights: a weight DequantizeLinear with a vector scale
    inits = {t.name: t for t in m.graph.initializer}
    assert any(n.op_type == "DequantizeLinear" and n.input[1] in inits and len(inits[n.input[1]].dims) == 1
               and inits[n.input[1]].dims[0] > 1 for n in m.graph.node)
    q = cert["quality"]
    assert q["passed"] and q["max_drop_db"] == 1.0 and q["sets"]["pairs"]["n"] == 2
    # int8 weights; the rule's float nodes hold 16 % of the weights: well under 60 % of the fp32 file (6.2 MB)
    assert os.path.getsize(res.path) < 0.6 * 6.2e6
    # the gate function itself can fail (a controlled case: a negative allowance)
    bad = P.quality_gate(res.path, anyir_edge.load_model(ckpt), "int8", tmp_path, [str(qset)], threads=1,
                         max_drop_db=-50)
    assert bad["passed"] is False and bad["sets"]["pairs"]["passed"] is False


def test_int8_rule_float_nodes_on_a_hand_built_graph():
    """The rule reads the graph, not names: a Conv on the graph input, a Conv whose result reaches
    the output through the residual Add, and a Conv fed by a product of two activations stay in
    float; a Conv fed by a product with a constant (a scale) is quantized."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    k = numpy_helper.from_array(np.full((1,), 2.0, np.float32), "k")
    conv = lambda i, o: helper.make_node("Conv", [i, "w"], [o], name=o)  # noqa: E731
    nodes = [conv("x", "c1"), helper.make_node("Mul", ["c1", "k"], ["scaled"], name="scale"),
             conv("scaled", "c2"), helper.make_node("Sigmoid", ["c2"], ["s"], name="sig"),
             helper.make_node("Mul", ["c2", "s"], ["gated"], name="gate"), conv("gated", "c3"), conv("c3", "c4"),
             helper.make_node("Add", ["c4", "x"], ["y"], name="residual")]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4])  # noqa: E731
    g = helper.make_graph(nodes, "g", [vi("x")], [vi("y")], [w, k])
    rules = P.int8_rule_float_nodes(helper.make_model(g), ("Conv",))
    assert rules == {"c1": "reads the image", "c3": "input is a product of two activations",
                     "c4": "writes the output"}


def test_bad_quantization_is_refused(ckpt, small_inputs, tmp_path, monkeypatch):
    """Calibrated on all-black inputs every activation range collapses: the INT8 engine is far
    below 35 dB and the export refuses it (no search / dynamic fallback to rescue it)."""
    monkeypatch.setattr(P, "calibration_samples", lambda *a, **k: (
        [np.zeros((1, 3, 32, 32), np.float32)] * 2, {"folder": "black", "images": 2, "degradations": [],
                                                      "samples": 2, "crop": [32, 32]}))
    (tmp_path / "tiny-int8.onnx").write_bytes(b"previous good engine")
    with pytest.raises(ParityError, match="below the 35 dB gate") as e:
        export(str(ckpt), to="onnx", int8=True, output=str(tmp_path), threads=1, inputs=small_inputs, search=False,
               log=lambda m: None)
    assert "\n" not in str(e.value)
    assert (tmp_path / "tiny-int8.onnx").read_bytes() == b"previous good engine"
    cert = json.loads((tmp_path / "tiny-int8.rejected.onnx.parity.json").read_text())
    assert cert["passed"] is False and cert["rejected"] and cert["precision"] == "int8"
    assert cert["summary"]["psnr_min"] < 35


# ------------------------------------------------------------- calibration input
def test_calibration_samples_degraded_every_way(calib_dir):
    samples, desc = P.calibration_samples(calib_dir, size=32)
    n = len(anyir_edge.degradations.ORDER)
    assert len(samples) == 2 * n and desc["images"] == 2
    assert all(s.shape == (1, 3, 32, 32) and s.dtype == np.float32 for s in samples)
    assert len({float(s.mean()) for s in samples}) == len(samples)  # each degradation differs
    logs = []
    samples, desc = P.calibration_samples(None, size=32, log=logs.append)
    assert desc["folder"].startswith("built-in") and len(logs) == 1 and logs[0].startswith("warning:")


def test_calibration_folder_errors_are_one_line(ckpt, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"")
    out = tmp_path / "out"
    for folder, match in ((empty, "no images"), (junk, "can be decoded"), (tmp_path / "missing", "no such folder")):
        with pytest.raises(ExportError, match=match) as e:
            export(str(ckpt), to="onnx", int8=True, calib=str(folder), output=str(out))
        assert "\n" not in str(e.value)
    assert not out.exists()  # refused before any work
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(ExportError, match="can be decoded"):
        P.calibration_samples(corrupt)
    from anyir_edge.cli import export as cli_export

    for argv in (["--int8", "--calib", str(empty)], ["--fp16", "--int8"], ["--calib", str(empty)],
                 ["--to", "trt", "--data", str(tmp_path)]):
        assert run("anyir-export", cli_export.main, ["--model", str(ckpt), "-o", str(out), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("anyir-export: error: "), err


# ----------------------------------------------------------------------- bench
def test_bench_wires_reduced_precision(ckpt, tmp_path, monkeypatch):
    import anyir_edge.bench as B
    import anyir_edge.export as E

    for backend in ("onnxruntime", "openvino"):
        for prec in ("fp32", "fp16", "int8"):
            if backend == "openvino" and B._backends.is_available("openvino"):
                continue
            assert B.availability(backend, prec) is None
    seen = []

    class R:
        path = tmp_path / "x.onnx"

    monkeypatch.setattr(E, "export", lambda model, **kw: seen.append(kw) or R())
    bench = B.Bench(B.Settings(model=str(ckpt), workdir=str(tmp_path / "w")), progress=False)
    bench.artifact_for("onnxruntime", "int8")
    bench.artifact_for("openvino", "fp16")
    assert seen[0]["int8"] is True and seen[0]["to"] == "onnx"
    assert seen[1]["half"] is True and seen[1]["to"] == "openvino"


# ------------------------------------------------------- full quality gate (slow)
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ANYIR_PRECISION_FULL"), reason="full CBSD68/Rain100L gate: set "
                    "ANYIR_PRECISION_FULL=1 (and ANYIR_DATA) to run it")
def test_quality_gate_cbsd68_rain100l(fp16_export, ckpt, shared_data):
    q = P.quality_gate(fp16_export.path, anyir_edge.load_model(ckpt), "fp16", shared_data, threads=1)
    assert set(q["sets"]) == {"cbsd68-25", "rain100l"} and q["passed"], q


# -------------------------------------------------------------------- OpenVINO INT8
def _zeros_ir_transform(samples, ignored=None):
    """Stands in for an NNCF quantization that ruins the model: the IR outputs zeros."""
    import openvino as ov
    import openvino.opset13 as ops

    def transform(m):
        image = ops.parameter(m.inputs[0].get_partial_shape(), ov.Type.f32, name="image")
        image.output(0).get_tensor().set_names({"image"})
        out = ops.multiply(image, ops.constant(np.float32(0.0)))
        out.output(0).get_tensor().set_names({"restored"})
        return ov.Model([out], [image], "zeros")

    return transform


def test_openvino_int8_through_the_qdq_graph(ckpt, small_inputs, calib_dir, tmp_path, monkeypatch):
    """OpenVINO INT8 when NNCF's IR misses the gate is ONNX Runtime's Q/DQ graph converted to
    FakeQuantize: it passes the 35 dB gate on OpenVINO's own INT8 execution."""
    pytest.importorskip("openvino")
    import openvino as ov

    from anyir_edge.export.precision import openvino as P_openvino

    monkeypatch.setattr(P_openvino, "nncf_available", lambda: True)
    monkeypatch.setattr(P_openvino, "openvino_int8_transform", _zeros_ir_transform)
    logs = []
    res = export(str(ckpt), to="openvino", int8=True, calib=str(calib_dir), output=str(tmp_path), threads=1,
                 inputs=small_inputs, log=logs.append)
    cert, rp = res.certificate, res.certificate["reduced_precision"]
    assert res.path.name == "tiny-int8.xml" and cert["passed"] and cert["summary"]["psnr_min"] >= 35
    assert rp["method"] == "onnx-qdq" and rp["quantized_nodes"] and rp["reduce_range"]
    assert all("Conv" in n for n in rp["quantized_nodes"])  # the CPU plugin cannot compile Q/DQ MatMul
    assert rp["attempts"][0]["method"] == "nncf" and rp["attempts"][0]["psnr_min"] < 35
    assert rp["attempts"][1]["method"] == "onnx-qdq"
    assert any("trying ONNX Runtime's Q/DQ graph" in m for m in logs)
    m = ov.Core().read_model(str(res.path))
    assert sum(op.get_type_name() == "FakeQuantize" for op in m.get_ordered_ops()) >= len(rp["quantized_nodes"])
    assert m.get_rt_info(["anyir_edge", "int8_method"]).astype(str) == "onnx-qdq"
    assert m.get_rt_info(["anyir_edge", "int8_weight_bits"]).astype(str) == "7"  # no saturation warning on AVX2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-int8.bin", "tiny-int8.xml", "tiny-int8.xml.parity.json"]


def test_openvino_int8_without_nncf_goes_straight_to_the_qdq_graph(tmp_path, monkeypatch):
    """Without NNCF no NNCF graph is tried: ONNX Runtime's Q/DQ quantization (OpenVINO's op types, no
    dynamic fallback, which OpenVINO cannot run) is the first attempt, and the log says why.
    (The Q/DQ path itself is exercised end to end by the test above.)"""
    from anyir_edge.export.precision import openvino as P_openvino

    calls = []

    class Stop(Exception):
        pass

    def recording_quantize(onnx_path, out, samples, probe, threshold, search, **kw):
        calls.append(kw)
        raise Stop

    def no_convert(*a, **kw):
        raise AssertionError("nothing is converted before the Q/DQ graph exists")

    monkeypatch.setattr(P_openvino, "nncf_available", lambda: False)
    monkeypatch.setattr(P_openvino, "quantize_int8", recording_quantize)
    monkeypatch.setattr("anyir_edge.export.openvino_export.convert", no_convert)
    logs = []
    with pytest.raises(Stop):
        P_openvino.convert_openvino(tmp_path / "m.onnx", tmp_path / "m.xml", {}, "int8", samples=[],
                                    probe=lambda p: 50.0, threshold=35.0, log=logs.append)
    assert len(calls) == 1 and calls[0]["dynamic_fallback"] is False
    assert tuple(calls[0]["op_types"]) == tuple(P_openvino.OPENVINO_INT8_OP_TYPES)
    assert any("NNCF is not installed" in m for m in logs)
    assert not list(tmp_path.glob(".ov-int8-*"))  # its work folder is removed on the way out
