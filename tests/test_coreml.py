"""``anyir-export --to coreml`` (issue #22): a Core ML ``.mlpackage`` converted here, with a structural
certificate that says it was not executed (Core ML needs macOS), and what the pipeline and the
runtime do with a folder engine.

The conversions need coremltools (``pip install anyir-edge[coreml]``; CI installs it with
``[dev]``); the folder-engine tests at the top need nothing.  The network is the small AnyIR of
the ExecuTorch tests (dim 8, one block per level) with ``--max-side 64``, traced once for
the module's three conversions (:func:`trace_once`).
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from anyir_edge import artifact
from anyir_edge.errors import EngineError
from anyir_edge.export import ExportError, ParityError, export, formats, output_path

from conftest import SMALL_ANYIR, small_net

MAX_SIDE = 64
FIXTURES = Path(__file__).parent / "fixtures"
CHECKS = {"package", "program", "io", "convolutions", "conv_weights", "fp32_islands", "metadata"}


# ------------------------------------------------------------- folder engines (no coremltools)
def _bundle(root, files: dict):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_a_folder_engine_has_a_deterministic_digest_over_its_files(tmp_path):
    a = _bundle(tmp_path / "a.mlpackage", {"Manifest.json": b"{}", "Data/x/model.mlmodel": b"spec", "Data/x/w.bin": b"w"})
    b = _bundle(tmp_path / "b.mlpackage", {"Data/x/w.bin": b"w", "Data/x/model.mlmodel": b"spec", "Manifest.json": b"{}"})
    assert artifact.engine_sha256(a) == artifact.engine_sha256(b)  # creation order does not matter
    assert [f.name for f in artifact.engine_files(a)] == ["model.mlmodel", "w.bin", "Manifest.json"]  # sorted paths
    assert artifact.engine_size_mb(a) == pytest.approx(7 / 2**20)
    digest = artifact.engine_sha256(a)
    (a / "Data/x/w.bin").rename(a / "Data/x/v.bin")  # same bytes, another name
    assert artifact.engine_sha256(a) != digest
    (a / "Data/x/v.bin").rename(a / "Data/x/w.bin")
    (a / "Data/x/extra").write_bytes(b"")  # an empty file added
    assert artifact.engine_sha256(a) != digest
    (a / "Data/x/extra").unlink()
    assert artifact.engine_sha256(a) == digest


def test_a_certificate_beside_a_folder_engine_is_compared_without_crashing(tmp_path):
    pkg = _bundle(tmp_path / "m.mlpackage", {"Manifest.json": b"{}", "Data/w.bin": b"1234"})
    cert = artifact.certificate_path(pkg)
    assert cert.name == "m.mlpackage.parity.json"
    cert.write_text(json.dumps({"engine": pkg.name, "engine_sha256": artifact.engine_sha256(pkg)}))
    assert artifact.certificate_mismatch(pkg) is None
    (pkg / "Data/w.bin").write_bytes(b"1235")
    assert "was made for another engine file" in artifact.certificate_mismatch(pkg)
    odd = tmp_path / "folder.onnx"  # a folder where a file engine should be: a reason, not a crash
    odd.mkdir()
    artifact.certificate_path(odd).write_text(json.dumps({"engine_sha256": "00"}))
    assert "cannot read it" in artifact.certificate_mismatch(odd)


def test_an_output_path_naming_the_package_is_the_package_not_a_folder_to_write_into(tmp_path):
    fmt = formats.resolve("coreml")
    existing = tmp_path / "x.mlpackage"
    existing.mkdir()
    assert output_path(str(existing), "anyir-tiny", fmt) == existing
    assert output_path(str(existing) + "/", "anyir-tiny", fmt) == existing
    assert output_path(str(tmp_path), "anyir-tiny", fmt) == tmp_path / "anyir-tiny.mlpackage"
    with pytest.raises(ExportError, match="written as"):
        output_path(str(tmp_path / "x.onnx"), "anyir-tiny", fmt)


def test_the_format_row_and_the_backend_are_registered():
    from anyir_edge.runtime import backends

    fmt = formats.resolve("mlpackage")
    assert fmt.name == "coreml" and fmt.suffix == ".mlpackage" and not fmt.gpu
    assert {"half", "max_side", "fft"} <= fmt.flags and "int8" not in fmt.flags and "dft" not in fmt.fft
    assert backends.backend_for("out/m.mlpackage") == "coreml"
    assert backends.canonical("mlpackage") == "coreml"
    why = backends.is_available("coreml")
    if sys.platform != "darwin":
        assert why and "Core ML runs only on macOS" in why and "\n" not in why


# --------------------------------------------------------------------------- conversions
@pytest.fixture(scope="module")
def small():
    return small_net()


@pytest.fixture(scope="module", autouse=True)
def trace_once():
    """The module's conversions share one traced program per (weights, fft, max side): tracing and
    decomposing take two thirds of a conversion, and fp32, fp16 and a rejected export trace the same
    network (the first export traces it for real)."""
    from anyir_edge.export import coreml_export
    from anyir_edge.models.checkpoint import weights_sha256

    real, cache = coreml_export.trace, {}

    def cached(model, fft, max_side, log=lambda s: None):
        key = (weights_sha256(model), fft, max_side)
        if key not in cache:
            cache[key] = real(model, fft, max_side, log=log)
        return cache[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(coreml_export, "trace", cached)
        yield


def _export(model, out, **kw):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return export(model, to="coreml", output=str(out), max_side=MAX_SIDE, log=lambda m: None, **kw)
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def package(small, tmp_path_factory):
    """The fp32 export, written over a stale NAME.mlpackage and certificate (a re-export)."""
    pytest.importorskip("coremltools")
    d = tmp_path_factory.mktemp("coreml")
    stale = _bundle(d / "anyir-tiny.mlpackage", {"Manifest.json": b"{}", "Data/old.bin": b"old weights"})
    artifact.certificate_path(stale).write_text(json.dumps({"engine": stale.name, "engine_sha256": "stale"}))
    return _export(small, d)


def _spec(path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _conv_calls(model):
    """(convolution calls, their weight elements) of the mobile form the exporter traces, counted
    by running it (independent of the exporter's own count from the torch.export graph)."""
    from anyir_edge.export.mobile_export import mobile_module

    mod, _ = mobile_module(model, "fold")
    convs = [m for m in mod.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m.weight.numel())) for m in convs]
    with torch.no_grad():
        mod(torch.rand(1, 3, 40, 48))
    for h in hooks:
        h.remove()
    return len(calls), sum(calls)


def test_the_certificate_is_structural_and_says_it_was_not_executed(package, small):
    from anyir_edge.models.checkpoint import weights_sha256

    cert = json.loads(package.certificate_path.read_text())
    assert package.path.name == "anyir-tiny.mlpackage" and package.path.is_dir()
    assert package.certificate_path.name == "anyir-tiny.mlpackage.parity.json"
    assert cert["certificate"] == "anyir-edge structural" and cert["executed"] is False
    assert "macOS" in cert["not_executed"] and cert["passed"] is True and "failure" not in cert
    assert set(cert["checks"]) == CHECKS and all(c["passed"] for c in cert["checks"].values())
    assert cert["summary"]["psnr_min"] is None and cert["summary"]["checks_passed"] == "7 of 7"
    assert (cert["format"], cert["fft"], cert["max_side"], cert["deploy_form"], cert["precision"]) == \
        ("coreml", "fold", MAX_SIDE, "mobile", "fp32")
    # the identity fields every certificate has
    assert cert["model"] == "anyir-tiny" and cert["arch"] == "anyir" and cert["weights_sha256"] == weights_sha256(small)
    assert cert["config"]["dim"] == SMALL_ANYIR["dim"] and cert["versions"]["coremltools"]
    assert cert["minimum_deployment_target"].startswith("iOS16")
    # the convolutions: Core ML's against the traced program's, and both against the module run in PyTorch
    convs = cert["checks"]["convolutions"]
    calls, elements = _conv_calls(small)
    assert convs["coreml"]["count"] == convs["torch"]["count"] == calls > 0
    assert convs["coreml"]["weight_elements"] == convs["torch"]["weight_elements"] == elements
    weights = cert["checks"]["conv_weights"]
    assert weights["dtype"] == {"float32": calls} and weights["equal"] == weights["compared"] == calls
    io = cert["checks"]["io"]
    assert io["input"]["ranges"] == [[1, 1], [3, 3], [8, MAX_SIDE], [8, MAX_SIDE]]
    assert io["program_output"]["dims"] == [1, 3, "?", "?"] and io["output"]["dtype"] == "float32"
    assert cert["checks"]["program"]["op_histogram"]["conv"] == convs["coreml"]["by_op"]["conv"]


@pytest.mark.parametrize("name, arch", [("promptir-authors-d6", "promptir"), ("moce-ir-authors-d4-spread", "moce-ir")])
def test_the_authors_promptir_and_moce_ir_convert(name, arch, tmp_path):
    """The other architectures' mobile forms convert too (the authors' golden fixtures): PromptIR's
    prompt resize to a run-time size as interpolation matrices (coremltools 9 cannot map
    ``upsample_bilinear`` to a run-time size) and MoCE-IR's patch DFTs with fixed padding (a modulo
    of the run-time size did not convert)."""
    pytest.importorskip("coremltools")
    from anyir_edge import load_model

    model = load_model(FIXTURES / f"{name}.ckpt")
    res = _export(model, tmp_path / f"{name}.mlpackage")
    cert = json.loads(res.certificate_path.read_text())
    assert cert["arch"] == arch and cert["passed"] is True and cert["executed"] is False
    assert set(cert["checks"]) == CHECKS and all(c["passed"] for c in cert["checks"].values())
    ops = cert["checks"]["program"]["op_histogram"]
    assert not {op for op in ops if "upsample" in op or "resize" in op or op == "mod"}


def test_half_keeps_moce_ir_patch_spectral_products_float32(tmp_path):
    """MoCE-IR's patch spectral products overflow float16 (tests/test_mobile.py) and are ordinary
    convolutions and products, which no op type singles out: ``--half`` keeps the ops made from the
    float32-only modules' nodes float32 by name, and the certificate checks it in the saved program
    (their convolution weights float32, every other one float16)."""
    pytest.importorskip("coremltools")
    from anyir_edge import load_model

    model = load_model(FIXTURES / "moce-ir-authors-d4-spread.ckpt")
    res = _export(model, tmp_path / "m.mlpackage", half=True)
    cert = json.loads(res.certificate_path.read_text())
    assert cert["passed"] and cert["precision"] == "fp16" and set(cert["checks"]) == CHECKS
    islands = cert["checks"]["fp32_islands"]
    assert islands["passed"] and islands["islands"] > 0 and islands["ops"] >= islands["islands"] // 2
    weights = cert["checks"]["conv_weights"]
    assert weights["passed"] and set(weights["dtype"]) == {"float16", "float32"}
    assert weights["dtype"] == weights["expected_dtype"] and weights["equal"] == weights["compared"]


def test_island_names_match_the_node_or_a_derived_op_not_another_node():
    from anyir_edge.export.coreml_export import in_island

    islands = {"conv2d", "mul_12", "conv_transpose2d_3"}
    assert in_island("conv2d", islands) and in_island("mul_12", islands)
    assert in_island("conv_transpose2d_3_has_output_shape", islands) and in_island("mul_12_cast_fp16", islands)
    assert not in_island("conv2d_5", islands) and not in_island("mul_1", islands) and not in_island("mul_123", islands)
    assert not in_island("conv_transpose2d_31_has_output_shape", islands) and not in_island("add", islands)


def test_the_islands_check_fails_on_a_float16_island_op_or_islands_not_found():
    from anyir_edge.export.coreml_export import _check_fp32_islands

    built = {"fp32_islands": ["mul_12", "conv2d_3"]}
    ok = {"op_outputs": [("mul", "mul_12", "float32"), ("conv", "conv2d_3", "float32"), ("mul", "mul_1_cast_fp16", "float16"),
                         ("cast", "mul_12_to_fp16", "float16")]}  # a cast at the island's edge is not the island
    assert _check_fp32_islands(None, ok, built)["passed"] and _check_fp32_islands(None, ok, built)["ops"] == 2
    bad = {"op_outputs": [("mul", "mul_12_cast_fp16", "float16"), ("conv", "conv2d_3", "float32")]}
    res = _check_fp32_islands(None, bad, built)
    assert not res["passed"] and "mul_12_cast_fp16" in res["error"]
    lost = {"op_outputs": [("mul", "multiply_0", "float16")]}  # named otherwise: nothing found is a failure
    assert not _check_fp32_islands(None, lost, built)["passed"]
    assert _check_fp32_islands(None, lost, {"fp32_islands": []})["passed"]  # FP32 or no islands: nothing to check


def test_a_re_export_replaces_the_package_and_the_certificate_describes_the_new_one(package):
    cert = json.loads(package.certificate_path.read_text())
    assert not (package.path / "Data" / "old.bin").exists()
    assert cert["engine_sha256"] == artifact.engine_sha256(package.path) != "stale"
    assert artifact.certificate_mismatch(package.path) is None
    # nothing left beside it: no work folder, no old package renamed aside
    assert sorted(p.name for p in package.path.parent.iterdir()) == sorted([package.certificate_path.name, package.path.name])


def test_the_packages_metadata_read_back(package, small):
    spec = _spec(package.path)
    meta = dict(spec.description.metadata.userDefined)
    assert meta[artifact.ARCH] == "anyir" and meta[artifact.NAME] == "anyir-tiny"
    assert meta[artifact.MAX_SIDE] == str(MAX_SIDE) and meta[artifact.DEPLOY_FORM] == "mobile"
    assert meta[artifact.SIZE_MULTIPLE] == "8" and meta[artifact.FFT] == "fold"
    assert json.loads(meta[artifact.CONFIG])["dim"] == SMALL_ANYIR["dim"]
    assert meta[artifact.INPUT] == "image" and meta[artifact.OUTPUT] == "restored"
    assert artifact.PRECISION not in meta  # fp32, as the other targets' fp32 engines
    assert spec.description.metadata.author.startswith("anyir-edge")
    assert [i.name for i in spec.description.input] == ["image"] and [o.name for o in spec.description.output] == ["restored"]
    assert not (package.path / "executorch_debug_handle_mapping.json").exists()


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_the_runtime_refuses_a_package_in_one_line_off_macos(package, tmp_path, capsys):
    from anyir_edge.cli import restore as cli_restore
    from anyir_edge.cli import run
    from anyir_edge.runtime import Restorer

    with pytest.raises(EngineError, match="Core ML runs only on macOS") as e:
        Restorer.open(str(package.path))
    assert "\n" not in str(e.value)
    img = tmp_path / "in.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((16, 16, 3), np.uint8))
    rc = run("anyir-restore", cli_restore.main, [str(img), "-o", str(tmp_path / "out"), "--model", str(package.path)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc != 0 and len(err) == 1 and "Core ML runs only on macOS" in err[0], err


def test_half_is_an_fp16_program_named_fp16(small, tmp_path):
    pytest.importorskip("coremltools")
    from coremltools.proto import MIL_pb2

    res = _export(small, tmp_path, half=True)
    assert res.path.name == "anyir-tiny-fp16.mlpackage"
    cert = res.certificate
    assert cert["passed"] and cert["precision"] == "fp16" and cert["executed"] is False
    assert cert["checks"]["conv_weights"]["dtype"] == {"float16": cert["checks"]["convolutions"]["coreml"]["count"]}
    assert "matmul" in cert["fp16_fp32_ops"]
    # read the spec here too: the convolutions' weight constants are FP16, the model's I/O float32
    spec = _spec(res.path)
    main = spec.mlProgram.functions["main"]
    ops = list(main.block_specializations[main.opset].operations)
    consts = {o.outputs[0].name: o for o in ops if o.type == "const"}
    wtypes = {MIL_pb2.DataType.Name(consts[o.inputs["weight"].arguments[0].name].outputs[0].type.tensorType.dataType)
              for o in ops if o.type in ("conv", "conv_transpose")}
    assert wtypes == {"FLOAT16"}
    assert dict(spec.description.metadata.userDefined)[artifact.PRECISION] == "fp16"
    assert cert["checks"]["io"]["input"]["dtype"] == "float32" and cert["checks"]["io"]["output"]["dtype"] == "float32"


def test_a_failed_structural_check_rejects_the_package(small, tmp_path, monkeypatch):
    pytest.importorskip("coremltools")
    from anyir_edge.export import coreml_export

    real = coreml_export.torch_structure

    def one_conv_less(ep, islands=frozenset()):
        s = real(ep, islands)
        s["convs"] = s["convs"][:-1]
        return s

    monkeypatch.setattr(coreml_export, "torch_structure", one_conv_less)
    with pytest.raises(ParityError, match="structural check 'convolutions' failed") as e:
        _export(small, tmp_path)
    assert "\n" not in str(e.value)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["anyir-tiny.rejected.mlpackage", "anyir-tiny.rejected.mlpackage.parity.json"]
    cert = json.loads((tmp_path / names[1]).read_text())
    assert cert["rejected"] and not cert["passed"] and "convolutions" in cert["failure"]
    assert cert["engine_sha256"] == artifact.engine_sha256(tmp_path / names[0])


@pytest.mark.parametrize("opts,match", [
    ({"max_side": 30}, "multiple of 8"),
    ({"max_side": 8192}, "multiple of 8 from 32"),
    ({"max_side": 24}, "from 32 to"),
    ({"max_side": "64"}, "multiple of 8"),
    ({"int8": True}, "--int8 is not supported by --to coreml"),
    ({"calib": "x"}, "--calib is not supported by --to coreml"),
    ({"fft": "dft"}, "--fft dft is not supported by --to coreml"),
])
def test_bad_options_are_refused_in_one_line_before_any_work(tmp_path, opts, match):
    with pytest.raises(ExportError, match=match) as e:
        export("anyir-paper-tiny", to="coreml", output=str(tmp_path), **opts)
    assert "\n" not in str(e.value)
    assert not list(tmp_path.iterdir())


def test_the_command_line_refuses_int8_in_one_line(tmp_path, capsys):
    from anyir_edge.cli import export as cli_export
    from anyir_edge.cli import run

    assert run("anyir-export", cli_export.main, ["--to", "coreml", "--int8", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--int8 is not supported by --to coreml" in err[0], err
    assert not list(tmp_path.iterdir())
