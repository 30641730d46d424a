"""The engine-file contract: what every exported engine carries, and how it is written and read.

This module is its one owner.  The exporter writes through it, the Python runtime reads
through it, and the C++ runtime reads the same keys (``runtimes/cpp/src/metadata_keys.hpp``;
``tests/test_cpp_runtime.py`` fails when the two lists differ).  It imports neither torch nor
the exporter, so an app that only runs engines never loads them.

An engine is a graph with one input ``image`` and one output ``restored``: float32 NCHW RGB
in [0, 1], H and W multiples of ``size_multiple`` (the runtime pads with :data:`PAD_RULE` and
crops back).  Its metadata are string pairs ``anyir_edge.<key>``, stored

* in ONNX as ``metadata_props``;
* in an OpenVINO IR as ``rt_info`` under the section ``anyir_edge`` (keys without the prefix);
  an IR converted without that section keeps the ONNX frontend's copy under ``framework``;
* for TensorRT in the sidecar ``NAME.trt.json`` beside ``NAME.engine`` (its ``metadata``
  object), because a serialized engine holds no user metadata;
* in an ExecuTorch ``.pte`` as the constant method :data:`PTE_METADATA_METHOD`, which returns
  the JSON object of the pairs as a uint8 tensor (:func:`encode_pte_metadata`), so the C++
  runtime on a phone reads them with the same ``Module::execute`` call as the model; a
  program built for bounded dynamic H and W (:data:`MAX_SIDE`) has one method ``forward``, one
  built for fixed sizes (:data:`SIZES`) one method per size (:func:`sized_entry_name`);
* in a LiteRT ``.tflite`` as the model's metadata entry :data:`TFLITE_METADATA_NAME` (a buffer
  holding the same JSON), which every TFLite flatbuffer reader can list; an engine built for
  fixed sizes names them in :data:`SIZES` and has one signature per size
  (:func:`sized_entry_name`);
* in a Core ML package (``.mlpackage``, a folder: :data:`BUNDLE_SUFFIXES`) as the model's
  ``user_defined_metadata`` (the spec's ``description.metadata.userDefined``), full key names.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import EngineError

PREFIX = "anyir_edge."
INPUT_NAME = "image"
OUTPUT_NAME = "restored"


def key(short: str) -> str:
    """``"size_multiple"`` -> ``"anyir_edge.size_multiple"``."""
    return PREFIX + short


# the keys (full names)
FORMAT = key("format")
NAME = key("name")
ARCH = key("arch")
CONFIG = key("config")
INPUT = key("input")
OUTPUT = key("output")
LAYOUT = key("layout")
COLOR = key("color")
DTYPE = key("dtype")
RANGE = key("range")
SIZE_MULTIPLE = key("size_multiple")
PAD = key("pad")
FFT = key("fft")
EXPORTER = key("exporter")
OPSET = key("opset")
SOURCE = key("source")
WEIGHTS_SHA256 = key("weights_sha256")
VERSION = key("version")
TORCH_VERSION = key("torch_version")
SIMPLIFIER = key("simplifier")
PRECISION = key("precision")
INT8_WEIGHT_BITS = key("int8_weight_bits")
MAX_SIDE = key("max_side")        # programs with bounded dynamic shapes (ExecuTorch): largest H and W
DEPLOY_FORM = key("deploy_form")  # "cpu" or "mobile" (anyir_edge.models.base.Architecture.deploy_copy)
SIZES = key("sizes")              # engines built for fixed sizes (LiteRT, ExecuTorch --sizes): "HxW,HxW" (padded)

#: what a runtime reads to run an engine; the C++ runtime reads exactly these
#: (``runtimes/cpp/src/metadata_keys.hpp``) and both fall back to them for an IR without its section
RUNTIME_KEYS = (NAME, ARCH, CONFIG, LAYOUT, SIZE_MULTIPLE, FFT, PRECISION, INT8_WEIGHT_BITS, VERSION, MAX_SIDE,
                SIZES)

PAD_RULE = ("bottom/right to a multiple of size_multiple, rows first then columns; reflect, "
            "edge-replicate a side not longer than its pad (anyir_edge.models.base.pad_to_multiple)")


def describe_io(size_multiple: int | str) -> dict[str, str]:
    """The tensor part of the contract, as metadata."""
    return {INPUT: INPUT_NAME, OUTPUT: OUTPUT_NAME, LAYOUT: "NCHW", COLOR: "RGB", DTYPE: "float32",
            RANGE: "0,1", SIZE_MULTIPLE: str(size_multiple), PAD: PAD_RULE}


# ----------------------------------------------------------------------- ONNX
def read_onnx(path) -> dict[str, str]:
    """The metadata of an ONNX file (without loading external weight data)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise EngineError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    return {p.key: p.value for p in model.metadata_props}


def write_onnx(model, meta: dict[str, str]) -> None:
    """Replace an ``onnx.ModelProto``'s metadata with ``meta`` (in memory)."""
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=str(v))


# ------------------------------------------------------------------ ExecuTorch
PTE_METADATA_METHOD = "anyir_edge_metadata"


def encode_pte_metadata(meta: dict[str, str]) -> bytes:
    """The bytes the ``.pte``'s metadata method returns (UTF-8 JSON, keys sorted; a ``.tflite``'s
    metadata buffer holds the same)."""
    return json.dumps({k: str(v) for k, v in meta.items()}, sort_keys=True).encode()


def decode_pte_metadata(raw: bytes) -> dict[str, str]:
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise EngineError("its anyir-edge metadata are not JSON") from None
    if not isinstance(doc, dict):
        raise EngineError("its anyir-edge metadata are not a JSON object")
    return {str(k): str(v) for k, v in doc.items()}


# ------------------------------------------------------------------------ LiteRT
TFLITE_METADATA_NAME = "anyir_edge"


def format_sizes(sizes) -> str:
    """``[(224, 224), (256, 384)]`` -> ``"224x224,256x384"`` (:data:`SIZES`)."""
    return ",".join(f"{h}x{w}" for h, w in sizes)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """:data:`SIZES` back to [(H, W), ...]; one-line :class:`EngineError` when malformed."""
    out = []
    for part in str(text).split(","):
        h, sep, w = part.strip().partition("x")
        if not (sep and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0):
            raise EngineError(f"bad {SIZES} metadata {text!r} (expected HxW[,HxW...])")
        out.append((int(h), int(w)))
    return out


def sized_entry_name(h: int, w: int) -> str:
    """The entry that runs an H x W input in an engine built for fixed sizes (:data:`SIZES`):
    a ``.tflite``'s signature, a ``.pte``'s method."""
    return f"restore_{h}x{w}"


def write_tflite(model: bytes, meta: dict[str, str]) -> bytes:
    """``model`` (a ``.tflite`` flatbuffer) with ``meta`` as its :data:`TFLITE_METADATA_NAME`
    metadata entry (replacing an earlier one), repacked without what nothing reads at run time:
    tensor names (litert-torch writes each tensor's module path, ~0.5 MB per signature of
    ``anyir-tiny``, a fifth of an INT8 file; the signatures name their inputs and outputs
    themselves) and the converter's empty buffers (ai-edge-litert's ``read_model_from_bytearray``
    points every tensor without data at buffer 0)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    m = flatbuffer_utils.read_model_from_bytearray(bytes(model))  # also brings data stored after the flatbuffer inside
    for g in m.subgraphs or []:
        for t in g.tensors or []:
            t.name = None
    m.metadata = [e for e in (m.metadata or []) if e.name not in (TFLITE_METADATA_NAME, TFLITE_METADATA_NAME.encode())]
    buf = schema.BufferT()
    buf.data = np.frombuffer(encode_pte_metadata(meta), dtype=np.uint8)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = TFLITE_METADATA_NAME, len(m.buffers) - 1
    m.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def read_tflite(model: bytes) -> dict[str, str]:
    """The anyir-edge metadata of a ``.tflite`` flatbuffer ({} when it has none)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        m = schema.Model.GetRootAs(model, 0)
        for i in range(m.MetadataLength()):
            entry = m.Metadata(i)
            if entry.Name() == TFLITE_METADATA_NAME.encode():
                buf = m.Buffers(entry.Buffer())
                if buf.Offset() > 1:  # stored after the flatbuffer (as ai-edge-quantizer writes it)
                    return decode_pte_metadata(bytes(model[buf.Offset():buf.Offset() + buf.Size()]))
                raw = buf.DataAsNumpy()
                return decode_pte_metadata(bytes(raw.tobytes()) if hasattr(raw, "tobytes") else b"")
    except EngineError:
        raise
    except Exception as e:
        raise EngineError(f"not a readable TFLite model ({type(e).__name__})") from None
    return {}


# ------------------------------------------------------------------- OpenVINO
RT_SECTION = "anyir_edge"


def write_openvino(model, meta: dict[str, str]) -> None:
    """Store ``meta`` in an ``openvino.Model``'s rt_info section (in memory)."""
    for k, v in meta.items():
        short = k[len(PREFIX):] if k.startswith(PREFIX) else k
        model.set_rt_info(str(v), [RT_SECTION, short])


def read_openvino(model) -> dict[str, str]:
    """The metadata of an ``openvino.Model`` read with ``Core.read_model``."""
    out = {}
    try:
        section = model.get_rt_info()[RT_SECTION]
        if hasattr(section, "astype"):
            section = section.astype(dict)
        keys = list(section.keys())
    except Exception:
        keys = []
    for short in keys:
        try:
            out[PREFIX + short] = model.get_rt_info([RT_SECTION, short]).astype(str)
        except Exception:
            pass
    if not out:  # the ONNX frontend's copy of metadata_props
        for k in RUNTIME_KEYS:
            try:
                if model.has_rt_info(["framework", k]):
                    out[k] = model.get_rt_info(["framework", k]).astype(str)
            except Exception:
                pass
    return out


# ----------------------------------------------------------- parity certificate
CERTIFICATE_SUFFIX = ".parity.json"


def companion(path, what: str) -> Path:
    """NAME.<what> beside NAME.<suffix> (e.g. NAME.parity.json, NAME.rejected.onnx)."""
    p = Path(path)
    return p.with_name(p.name[: -len(p.suffix)] + what if p.suffix else p.name + what)


def certificate_path(engine_path) -> Path:
    """Where the exporter writes an engine's certificate: the engine's file name + ``.parity.json``
    (NAME.onnx.parity.json, NAME.xml.parity.json, NAME.engine.parity.json), so engines of several
    formats exported into one folder under one name each keep their own."""
    p = Path(engine_path)
    return p.with_name(p.name + CERTIFICATE_SUFFIX)


def find_certificate(engine_path) -> Path | None:
    """The certificate that describes this engine file: :func:`certificate_path`, or, from
    exports before 0.2, NAME.parity.json when it names this engine (its ``engine`` field) or
    names none.  None when there is neither."""
    p = Path(engine_path)
    cert = certificate_path(p)
    if cert.is_file():
        return cert
    legacy = companion(p, CERTIFICATE_SUFFIX)
    if not legacy.is_file():
        return None
    try:
        doc = json.loads(legacy.read_text())
    except (OSError, ValueError):
        return legacy  # unreadable: certificate_mismatch says so
    named = doc.get("engine") if isinstance(doc, dict) else None
    return legacy if named in (None, p.name) else None


#: engines that are folders (a Core ML ``.mlpackage``: Manifest.json, the spec, the weight blobs)
BUNDLE_SUFFIXES = (".mlpackage",)


def is_bundle(engine_path) -> bool:
    """Whether ``engine_path`` names a folder engine (:data:`BUNDLE_SUFFIXES`), by its suffix."""
    return Path(engine_path).suffix.lower() in BUNDLE_SUFFIXES


def _bundle_files(root: Path) -> list[tuple[str, Path]]:
    """(path relative to ``root`` with ``/`` separators, file) for every file in the folder, sorted
    by the relative path (symbolic links to folders are not followed)."""
    import os

    out = []
    for d, _dirs, files in os.walk(root):
        for name in files:
            f = Path(d) / name
            out.append((f.relative_to(root).as_posix(), f))
    return sorted(out, key=lambda t: t[0])


def engine_files(engine_path) -> list[Path]:
    """The files an engine consists of: the file itself, an OpenVINO IR's ``.bin`` beside it, or
    every file of a folder engine (:data:`BUNDLE_SUFFIXES`), sorted by relative path."""
    p = Path(engine_path)
    if is_bundle(p) and p.is_dir():
        return [f for _, f in _bundle_files(p)]
    return [p, p.with_suffix(".bin")] if p.suffix.lower() == ".xml" else [p]


def engine_size_mb(engine_path) -> float:
    """Size of :func:`engine_files` in MiB (the files that exist)."""
    return sum(f.stat().st_size for f in engine_files(engine_path) if f.exists()) / 2**20


def engine_sha256(engine_path) -> str:
    """SHA-256 over the bytes of :func:`engine_files` (what a certificate's ``engine_sha256`` records).

    A folder engine (:data:`BUNDLE_SUFFIXES`) is hashed file by file in sorted relative-path order:
    the relative path (UTF-8, ``/`` separators), a NUL byte, the file's size (8 bytes, big-endian),
    then its bytes; so the digest does not depend on the file system's listing order, and a file
    renamed, added or removed changes it."""
    import hashlib

    h = hashlib.sha256()
    p = Path(engine_path)
    if is_bundle(p) and p.is_dir():
        items = _bundle_files(p)
    else:
        items = [(None, f) for f in engine_files(p)]
    for rel, f in items:
        with open(f, "rb") as fh:
            if rel is not None:
                h.update(rel.encode() + b"\0" + _file_size(fh).to_bytes(8, "big"))
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _file_size(fh) -> int:
    """The size of an open file."""
    import os

    return os.fstat(fh.fileno()).st_size


def certificate_mismatch(engine_path) -> str | None:
    """Why the parity certificate beside an engine does not describe it (None when it does, or
    when there is no certificate, or one from before certificates recorded the engine's digest)."""
    cert = find_certificate(engine_path)
    if cert is None:
        return None
    try:
        doc = json.loads(cert.read_text())
    except (OSError, ValueError):
        return f"its certificate {cert.name} is unreadable"
    want = doc.get("engine_sha256") if isinstance(doc, dict) else None
    if not want:
        return None
    try:
        have = engine_sha256(engine_path)
    except OSError as e:
        return f"cannot read it to compare with {cert.name} ({e.strerror or type(e).__name__})"
    if have != want:
        return (f"its certificate {cert.name} was made for another engine file (digest {want[:12]}..., this file "
                f"{have[:12]}...): the engine was replaced or modified after it was verified")
    return None


# ------------------------------------------------------------ TensorRT sidecar
SIDECAR_SUFFIX = ".trt.json"
SIDECAR_FORMAT = "anyir-edge tensorrt engine"


def sidecar_path(engine_path) -> Path:
    """NAME.trt.json beside NAME.engine / NAME.plan."""
    return companion(engine_path, SIDECAR_SUFFIX)


def write_sidecar(engine_path, settings: dict, build: dict, environment: dict, metadata: dict,
                  parity: dict | None = None) -> Path:
    """Write NAME.trt.json (atomically): build settings, TensorRT build report, the environment
    the engine was built in, the model metadata and, once verified, its parity."""
    from .fsutil import atomic_write

    doc = {"format": SIDECAR_FORMAT, "engine": Path(engine_path).name, "settings": settings, "build": build,
           "environment": environment, "metadata": metadata, "parity": parity}
    return atomic_write(sidecar_path(engine_path), (json.dumps(doc, indent=2) + "\n").encode())


def read_sidecar(engine_path) -> dict:
    p = sidecar_path(engine_path)
    if not p.is_file():
        raise EngineError(f"{engine_path}: no {p.name} beside it (written by anyir-export --to trt; it records the "
                          "TensorRT version, GPU and model metadata the engine needs)")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{p}: unreadable ({type(e).__name__})") from None
