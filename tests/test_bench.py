"""anyir-bench: status logic, parity that can fail, JSON schema, counts equal the model's."""
import json
import subprocess

import numpy as np
import pytest

import anyir_edge.bench as B
from anyir_edge.cli.bench import main as B_main
from anyir_edge import save_model
from anyir_edge.models.complexity import count_macs, count_params


@pytest.fixture
def ckpt(tmp_path, tiny_model):
    return save_model(tiny_model, tmp_path / "tiny.safetensors")


def test_availability_reasons(monkeypatch):
    from anyir_edge.runtime.backends import base

    real = base.missing_modules
    monkeypatch.setattr(base, "missing_modules", lambda ms: [m for m in ms if m in ("openvino", "tensorrt")] or real(ms))
    assert "openvino not installed" in B.availability("openvino", "fp32")
    assert "tensorrt not installed" in B.availability("tensorrt", "fp32")
    assert B.availability("onnxruntime", "fp32") is None
    assert B.availability("onnxruntime", "int8") is None and B.availability("onnxruntime", "fp16") is None
    with pytest.raises(B.BenchError, match="unknown backend"):
        B.availability("tflite", "fp32")


class FakeBench(B.Bench):
    """Engines replaced in-process: 'torch' is exact, 'onnxruntime' is perturbed by ``noise``."""

    noise = 0.0

    def artifact_for(self, backend, precision, log=None):
        if log:
            log(f"{backend} step 1\nsecond line")
        if backend == "openvino":
            raise RuntimeError("converter exploded")
        return self.checkpoint

    def run(self, backend, artifact, size, x_path):
        import torch

        x = np.load(x_path)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(x)).numpy()
        if backend == "onnxruntime":
            y = y + np.random.default_rng(0).normal(0, self.noise, y.shape).astype(np.float32)
        return {"times_s": [0.03, 0.01, 0.02], "peak_rss_mb": 123.0, "output": y, "engine": backend}


def _settings(ckpt, tmp_path, **kw):
    base = dict(model=str(ckpt), sizes=(16, 24), backends=("torch", "onnxruntime", "openvino", "tensorrt"),
                precisions=("fp32",), workdir=str(tmp_path / "w"))
    base.update(kw)
    return B.Settings(**base)


@pytest.mark.parametrize("noise,expected", [(0.0, "ok"), (0.05, "parity failed")])
def test_parity_is_computed_and_can_fail(ckpt, tmp_path, monkeypatch, noise, expected):
    real = B._backends.is_available
    monkeypatch.setattr(B._backends, "is_available", lambda n: "tensorrt not installed (here)" if n == "tensorrt" else real(n))
    bench = FakeBench(_settings(ckpt, tmp_path), progress=False)
    bench.noise = noise
    rows = {(r["backend"], r["size"]): r for r in bench.rows()}
    assert rows[("torch", 16)]["status"] == "ok" and rows[("torch", 16)]["parity_psnr_db"] == 200.0
    ort = rows[("onnxruntime", 24)]
    assert ort["status"] == expected
    if noise:
        assert 20 < ort["parity_psnr_db"] < 30 and ort["parity_max_abs"] > 0.1
    assert rows[("openvino", 16)]["status"] == "export failed" and "exploded" in rows[("openvino", 16)]["reason"]
    assert rows[("tensorrt", 16)]["status"] == "skipped" and "tensorrt not installed" in rows[("tensorrt", 16)]["reason"]
    lat = rows[("torch", 16)]["latency_ms"]
    assert lat["median"] == pytest.approx(20) and lat["min"] == pytest.approx(10) and lat["p90"] == pytest.approx(30)
    assert rows[("torch", 16)]["megapixels_per_s"] == pytest.approx(16 * 16 / 1e6 / 0.02)


def test_export_progress_reaches_the_log(ckpt, tmp_path):
    # without a bar, every exporter step is one line (a long ExecuTorch INT8 export must not look hung)
    lines = []
    bench = FakeBench(_settings(ckpt, tmp_path, backends=("torch", "onnxruntime"), sizes=(16,)), progress=False,
                      log=lines.append)
    bench.rows()
    assert lines == ["anyir-bench: torch fp32 export: torch step 1",
                     "anyir-bench: onnxruntime fp32 export: onnxruntime step 1"]


def test_counts_equal_the_model(ckpt, tmp_path, tiny_model):
    bench = FakeBench(_settings(ckpt, tmp_path, backends=("torch",)), progress=False)
    rows = bench.rows()
    assert all(r["params"] == count_params(tiny_model) for r in rows)
    assert [r["macs"] for r in rows] == [count_macs(tiny_model, 16), count_macs(tiny_model, 24)]


def test_bench_input_is_a_real_photo():
    x = B.bench_input(64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    # real content: strong spatial correlation between neighbours, unlike random noise
    a, b = x[0, :, :, :-1].ravel(), x[0, :, :, 1:].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.5


def test_cli_end_to_end_json_schema_and_gate(ckpt, tmp_path):
    out = tmp_path / "b.json"
    cmd = ["anyir-bench", "--model", str(ckpt), "--sizes", "32", "--backends", "torch,onnxruntime,tensorrt",
           "--runs", "2", "--warmup", "1", "--threads", "1", "--json", str(out), "--markdown", str(tmp_path / "b.md"),
           "--plot", str(tmp_path / "b.png"), "--fail-below", "60", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data) >= {"settings", "environment", "rows", "command"}
    env = data["environment"]
    assert {"cpu", "threads", "versions", "date"} <= set(env) and env["threads"] == 1
    assert {"torch", "onnxruntime", "openvino", "tensorrt"} <= set(env["versions"])
    rows = {r["backend"]: r for r in data["rows"]}
    for row in rows.values():
        assert set(row) == set(B.ROW_FIELDS)
        assert row["status"] in B.STATUS
    assert rows["onnxruntime"]["status"] == "ok" and rows["onnxruntime"]["parity_psnr_db"] >= 60
    assert rows["onnxruntime"]["artifact_mb"] > 0 and rows["onnxruntime"]["peak_rss_mb"] > 50
    assert rows["tensorrt"]["status"] == "skipped"
    assert "anyir-bench: onnxruntime fp32 export: " in r.stderr  # the exporter's steps, not a silent wait
    # the machine's GEMM peak, measured once in this run, and each engine's share of it
    peak = env["gemm_peak_gflops"]
    assert peak > 1.0
    ort = rows["onnxruntime"]
    assert ort["gflops"] == pytest.approx(2 * ort["macs"] / (ort["latency_ms"]["median"] / 1000) / 1e9)
    assert ort["peak_pct"] == pytest.approx(100 * ort["gflops"] / peak)
    assert rows["tensorrt"]["gflops"] is None
    assert "| backend |" in (tmp_path / "b.md").read_text() and "% GEMM peak" in (tmp_path / "b.md").read_text()
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    # an impossible gate makes the run fail
    cmd = ["anyir-bench", "--model", str(ckpt), "--sizes", "16", "--backends", "torch", "--runs", "1", "--warmup", "0",
           "--threads", "1", "--fail-below", "250", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "parity" in r.stderr


def test_cli_usage_errors(ckpt):
    r = subprocess.run(["anyir-bench", "--model", str(ckpt), "--backends", "tflite"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown backend tflite" in r.stderr


def test_bench_engines_pass_the_exporters_own_gate(ckpt, tmp_path, monkeypatch):
    """An engine that anyir-export would refuse is not benchmarked: the bench exports with the
    exporter's parity inputs (all of them, not an easier subset) and its gates."""
    import anyir_edge.export as E

    seen = {}

    def fake_export(model, **kw):
        seen.update(kw)
        raise E.ParityError("parity 25.00 dB is below the 35 dB gate: engine rejected, kept as /tmp/x/e.rejected.xml "
                            "(certificate e.rejected.xml.parity.json); e.xml was not written",
                            failure="parity 25.00 dB is below the 35 dB gate")

    monkeypatch.setattr(E, "export", fake_export)
    bench = B.Bench(_settings(ckpt, tmp_path, backends=("onnxruntime",), precisions=("int8",)), progress=False)
    try:
        rows = bench.rows()
    finally:
        bench.close()
    assert "inputs" not in seen and seen["int8"] is True  # the exporter's default inputs, as anyir-export uses
    assert {r["status"] for r in rows} == {"export failed"}
    assert rows[0]["reason"] == "parity 25.00 dB is below the 35 dB gate: engine rejected"  # no temporary path


def test_several_configurations_with_random_weights_in_one_table(tmp_path, capsys):
    """anyir-bench --models a,b --random-weights: configurations without shipped weights side by
    side (the cost table of issue #18), one row per model, a model column, real counts."""
    import json

    from anyir_edge.cli import run
    from anyir_edge.models import create
    from anyir_edge.models.complexity import count_params

    out = tmp_path / "b.json"
    rc = run("anyir-bench", B_main, ["--models", "anyir-tiny,anyir-paper-tiny", "--random-weights", "--size", "16",
                                     "--backends", "torch", "--runs", "1", "--warmup", "0", "--threads", "1",
                                     "--no-progress", "--json", str(out)])
    table = capsys.readouterr().out
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["status"]) for r in rows] == [("anyir-tiny", "ok"), ("anyir-paper-tiny", "ok")]
    assert [r["params"] for r in rows] == [count_params(create("anyir-tiny")), count_params(create("anyir-paper-tiny"))]
    assert table.splitlines()[0].startswith("| model | backend |")
    assert run("anyir-bench", B_main, ["--models", "anyir-tyni", "--random-weights", "--no-progress"]) == 1
    assert "did you mean 'anyir-tiny'" in capsys.readouterr().err



def test_architecture_comparison_divides_by_the_base_in_the_same_run(tmp_path):
    """benchmarks/compare_architectures.py: ratios per engine and size against the base model, the
    paper's Table 6 ratios beside ours, and a clear exit when the base was not measured."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("compare_architectures", root / "benchmarks" / "compare_architectures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def row(model, backend, size, params, macs, ms, status="ok"):
        return {"model": model, "backend": backend, "precision": "fp32", "size": size, "status": status,
                "params": params, "macs": macs, "latency_ms": {"median": ms}, "peak_rss_mb": 100.0,
                "parity_psnr_db": 120.0}

    doc = {"rows": [row("anyir", "onnxruntime", 224, 5e6, 20e9, 100.0), row("promptir", "onnxruntime", 224, 35e6, 140e9, 450.0),
                    row("anyir", "onnxruntime", 512, 5e6, 100e9, 800.0), row("promptir", "onnxruntime", 512, 35e6, 700e9, 4000.0),
                    row("moce-ir-s", "onnxruntime", 224, 0, 0, 0, status="failed")],
           "environment": {"cpu": "test CPU"}, "settings": {"threads": 1}, "command": "anyir-bench ..."}
    text = mod.compare(doc, "anyir")
    prompt = next(line for line in text.splitlines() if line.startswith("| promptir |"))
    assert "7.00x" in prompt and f"{35.59 / 6.29:.2f}x" in prompt and f"{132 / 19:.2f}x" in prompt
    assert "| onnxruntime fp32 | 224 | 100 (1.00x) | 450 (4.50x) |" in text
    assert "| onnxruntime fp32 | 512 | 800 (1.00x) | 4000 (5.00x) |" in text
    assert "moce-ir-s" not in text  # a failed row is not a measurement
    with pytest.raises(SystemExit, match="no measured row of the base"):
        mod.compare(doc, "anyir-tiny")
    src = tmp_path / "r.json"
    src.write_text(json.dumps(doc))
    assert mod.main([str(src), "--markdown", str(tmp_path / "r.md")]) == 0 and (tmp_path / "r.md").read_text() == text
    assert mod.main([str(tmp_path / "missing.json")]) == 2


def test_operator_classes_and_their_flops():
    """benchmarks/profile_ops.py sorts profiled nodes into the classes the issue names and counts a
    node's work from the shapes the profiler records."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("profile_ops", Path(__file__).resolve().parents[1] / "benchmarks" / "profile_ops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x = {"float": [1, 16, 32, 32]}
    cases = [("Conv", [x, {"float": [24, 16, 1, 1]}], [{"float": [1, 24, 32, 32]}], "conv 1x1", 2 * 24 * 32 * 32 * 16),
             ("FusedConv", [x, {"float": [16, 1, 3, 3]}], [x], "conv depthwise", 2 * 16 * 32 * 32 * 9),
             ("NchwcConv", [x, {"float": [32, 16, 3, 3]}], [{"float": [1, 32, 32, 32]}], "conv kxk", 2 * 32 * 32 * 32 * 144),
             ("MatMul", [{"float": [1, 2, 8, 1024]}, {"float": [1, 2, 1024, 8]}], [{"float": [1, 2, 8, 8]}],
              "matmul/attention", 2 * 2 * 8 * 8 * 1024),
             ("LayerNormalization", [x], [x], "layernorm", 0), ("ReorderOutput", [x], [x], "layout reorder", 0),
             ("Sigmoid", [x], [x], "element-wise", 0), ("Transpose", [x], [x], "copy/reshape", 0),
             ("ReduceL2", [x], [x], "reduce/softmax", 0), ("DepthToSpace", [x], [x], "pixel shuffle", 0)]
    for op, ins, outs, cls, flops in cases:
        assert mod.classify_ort(op, ins) == cls, op
        assert mod.flops_ort(op, ins, outs) == flops, op
    assert mod._bytes([{"float": [2, 3]}, {"int64": [4]}]) == 2 * 3 * 4 + 4 * 8
    assert mod.classify_ov("GroupConvolution", "", []) == "conv depthwise"
    assert mod.classify_ov("Convolution", "", [[1, 8, 4, 4], [8, 8, 1, 1]]) == "conv 1x1"
    assert mod.classify_ov("Subgraph", "/a/MatMul,/a/Softmax", []) == "matmul/attention"
    assert mod.classify_ov("Subgraph", "/n/LayerNormalization", []) == "layernorm"
    assert mod.classify_ov("Subgraph", "/a/Add,/a/Sigmoid", []) == "element-wise"
    assert mod.classify_ov("Reorder", "", []) == "layout reorder"


def test_delegated_share_comes_from_the_engines_certificate(tmp_path):
    """The phone engines' "delegated %" column: ExecuTorch's certificate records how many compute
    ops XNNPACK took; an engine without that record (or with a damaged certificate) shows none."""
    from anyir_edge.artifact import certificate_path

    pte, onnx, bad = tmp_path / "m.pte", tmp_path / "m.onnx", tmp_path / "b.pte"
    for p in (pte, onnx, bad):
        p.write_bytes(b"x")
    certificate_path(pte).write_text(json.dumps({"engine": pte.name, "delegation": {"delegated_share": 0.9876}}))
    certificate_path(onnx).write_text(json.dumps({"engine": onnx.name}))
    certificate_path(bad).write_text("{not json")
    assert B.delegated_share(pte) == pytest.approx(0.9876)
    assert B.delegated_share(onnx) is None and B.delegated_share(bad) is None
    assert B.delegated_share(tmp_path / "none.pte") is None
    base = dict(precision="fp32", size=224, status="ok", params=1e6, macs=1e9, latency_ms={"median": 10.0})
    rows = [dict(base, backend="executorch", delegated_share=0.9876), dict(base, backend="onnxruntime")]
    text = B.markdown(rows, None)
    head, _, et, ort = ([c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[:4])
    col = head.index("delegated %")
    assert et[col] == "98.8" and ort[col] == "-"
    assert "delegated %" not in B.markdown([dict(base, backend="onnxruntime")], None)


def test_interleaved_rounds_rotate_and_pair_each_rounds_ratio(monkeypatch):
    """benchmarks/_variants.py: each round starts one function further along (none always follows
    the same one), and the paired ratio is the median of per-round ratios, which a slow spell
    that hits every engine of a round leaves alone."""
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("_variants", folder / "_variants.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(str(folder))
    spec.loader.exec_module(mod)
    order, clock = [], {"t": 0.0}
    cost = {"ref": 1.0, "half": 0.5}
    spell = {1: 10.0, 2: 10.0, 3: 10.0}  # rounds 1-3 of 0-4 run 10x slower throughout (-1: the warm-up)

    def fn(name):
        def run():
            order.append(name)
            clock["t"] += cost[name] * spell.get((len(order) - 1) // 2 - 1, 1.0)
            return np.zeros(1)
        return run

    monkeypatch.setattr(mod.time, "perf_counter", lambda: clock["t"])
    row = mod.compare_row({"ref": fn("ref"), "half": fn("half")}, 5, "ref")
    assert order[2:] == ["ref", "half", "half", "ref", "ref", "half", "half", "ref", "ref", "half"]  # after the warm-up
    assert row["paired_ratio_to_ref"] == {"ref": 1.0, "half": 0.5}
    assert row["ms"] == {"ref": 10000.0, "half": 5000.0}  # medians: the slow rounds are the majority
