"""The engine-file contract (anyir_edge/artifact.py): one owner for metadata keys and tensor
names, the same keys on the C++ side, and readers that find the metadata in every format."""
import json
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from anyir_edge import artifact
from anyir_edge.errors import EngineError

ROOT = Path(__file__).resolve().parents[1]


def test_cpp_reads_the_same_keys_as_python():
    text = (ROOT / "runtimes" / "cpp" / "src" / "metadata_keys.hpp").read_text()
    consts = dict(re.findall(r'constexpr const char\* (k\w+) = "([^"]+)";', text))
    listed = re.search(r"kRuntimeKeys\[\] = \{([^}]*)\}", text).group(1)
    cpp_keys = tuple(consts[n.strip()] for n in listed.split(",") if n.strip())
    assert cpp_keys == artifact.RUNTIME_KEYS
    assert consts["kPrefix"] == artifact.PREFIX
    # and the C++ sources use the constants, not literal keys
    for src in (ROOT / "runtimes" / "cpp" / "src").glob("*.cpp"):
        code = re.sub(r"//.*", "", src.read_text())
        assert not re.search(r'"anyir_edge\.\w+"', code), src.name


def test_no_second_definition_of_the_contract():
    """The prefix and the tensor names are written down once, in artifact.py."""
    offenders = []
    for p in (ROOT / "anyir_edge").rglob("*.py"):
        if p.name == "artifact.py":
            continue
        code = p.read_text()
        if re.search(r'=\s*"anyir_edge\."\s*$', code, re.M) or re.search(r'_NAME\s*=\s*"(image|restored)"', code):
            offenders.append(str(p.relative_to(ROOT)))
    assert not offenders, offenders


def _tiny_onnx(path, meta):
    x = helper.make_tensor_value_info(artifact.INPUT_NAME, TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info(artifact.OUTPUT_NAME, TensorProto.FLOAT, ["n", 3, "h", "w"])
    g = helper.make_graph([helper.make_node("Identity", [artifact.INPUT_NAME], [artifact.OUTPUT_NAME])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    artifact.write_onnx(m, meta)
    onnx.save(m, str(path))
    return path


def test_onnx_metadata_round_trip(tmp_path):
    meta = {artifact.NAME: "x", **artifact.describe_io(8), artifact.CONFIG: json.dumps({"dim": 4})}
    p = _tiny_onnx(tmp_path / "m.onnx", meta)
    assert artifact.read_onnx(p) == meta
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all" * 3)
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        artifact.read_onnx(bad)


def test_openvino_reads_its_section_or_the_frontend_copy(tmp_path):
    ov = pytest.importorskip("openvino")
    meta = {artifact.NAME: "x", artifact.SIZE_MULTIPLE: "8", artifact.LAYOUT: "NCHW", artifact.FFT: "fold",
            artifact.PRECISION: "int8", artifact.INT8_WEIGHT_BITS: "7"}
    src = _tiny_onnx(tmp_path / "m.onnx", meta)
    plain = ov.convert_model(str(src))  # only the frontend's copy under "framework"
    assert artifact.read_openvino(plain) == meta  # every runtime key, not a subset
    ours = ov.convert_model(str(src))
    artifact.write_openvino(ours, {**meta, artifact.NAME: "y"})
    xml = tmp_path / "m.xml"
    ov.save_model(ours, str(xml))
    assert artifact.read_openvino(ov.Core().read_model(str(xml)))[artifact.NAME] == "y"


def test_sidecar_is_beside_the_engine_and_errors_are_one_line(tmp_path):
    eng = tmp_path / "m.engine"
    assert artifact.sidecar_path(eng) == tmp_path / "m.trt.json"
    with pytest.raises(EngineError, match="no m.trt.json beside it"):
        artifact.read_sidecar(eng)
    artifact.write_sidecar(eng, {"fp16": True}, {"tensorrt": "10.8"}, {"gpu": None}, {artifact.NAME: "m"})
    doc = artifact.read_sidecar(eng)
    assert doc["format"] == artifact.SIDECAR_FORMAT and doc["metadata"] == {artifact.NAME: "m"}
    artifact.sidecar_path(eng).write_text("{")
    with pytest.raises(EngineError, match="unreadable"):
        artifact.read_sidecar(eng)


def test_each_engine_keeps_its_own_certificate(tmp_path):
    """Engines of two formats exported under one name into one folder each have a certificate
    (NAME.onnx.parity.json, NAME.xml.parity.json); a pre-0.2 NAME.parity.json counts only for
    the engine it names, and the exporter's placing step removes it when it replaces that engine."""
    import json

    from anyir_edge.export import _accept_or_reject

    onnx_, xml = tmp_path / "m.onnx", tmp_path / "m.xml"
    assert artifact.certificate_path(onnx_).name == "m.onnx.parity.json"
    assert artifact.certificate_path(xml).name == "m.xml.parity.json"
    assert artifact.find_certificate(onnx_) is None
    legacy = tmp_path / "m.parity.json"
    legacy.write_text(json.dumps({"engine": "m.xml", "engine_sha256": "0" * 64}))
    onnx_.write_bytes(b"onnx engine")
    assert artifact.find_certificate(onnx_) is None and artifact.certificate_mismatch(onnx_) is None
    xml.write_bytes(b"ir")
    (tmp_path / "m.bin").write_bytes(b"weights")
    assert artifact.find_certificate(xml) == legacy and "another engine file" in artifact.certificate_mismatch(xml)
    legacy.write_text(json.dumps({"engine_sha256": "0" * 64}))  # names no engine: taken as before
    assert artifact.find_certificate(onnx_) == legacy
    legacy.write_text(json.dumps({"engine": "m.onnx", "engine_sha256": "0" * 64}))
    # export two formats under one name: both certificates stay, each matching its engine
    for final, body in ((onnx_, b"new onnx"), (xml, b"new ir")):
        tmp = tmp_path / f"work-{final.suffix[1:]}{final.suffix}"
        tmp.write_bytes(body)
        companions = [tmp.with_suffix(".bin")] if final.suffix == ".xml" else []
        for c in companions:
            c.write_bytes(b"new weights")
        cert_path, _ = _accept_or_reject(tmp, final, companions, {"passed": True}, None)
        assert cert_path == artifact.certificate_path(final)
    assert not legacy.exists()  # it described the onnx engine that was replaced
    for final in (onnx_, xml):
        doc = json.loads(artifact.certificate_path(final).read_text())
        assert doc["engine"] == final.name and artifact.certificate_mismatch(final) is None
