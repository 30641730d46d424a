"""Verified ONNX -> OpenVINO IR (``NAME.xml`` + ``NAME.bin``), fp32 weights unless ``--fp16`` / ``--int8``.

The ONNX ``metadata_props`` are copied into the IR's rt_info (:func:`anyir_edge.artifact.write_openvino`,
read back by the OpenVINO backend).
"""
from __future__ import annotations

from pathlib import Path

from .. import artifact
from .formats import ExportError


def convert(onnx_path: Path, xml_path: Path, meta: dict[str, str], compress_to_fp16: bool = False,
            transform=None) -> list[Path]:
    """Write ``xml_path`` (and its ``.bin``); returns the companion files besides the .xml.

    ``compress_to_fp16``: FP16 weights (``--fp16``); ``transform``: ov.Model -> ov.Model applied
    before saving (``--int8``: NNCF quantization, :mod:`anyir_edge.export.precision`)."""
    try:
        import openvino as ov
    except ImportError:
        raise ExportError("--to openvino needs OpenVINO: pip install anyir-edge[openvino]") from None
    try:
        model = ov.convert_model(str(onnx_path))
        if transform is not None:
            model = transform(model)
        artifact.write_openvino(model, meta)
        ov.save_model(model, str(xml_path), compress_to_fp16=bool(compress_to_fp16))
    except ExportError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"OpenVINO conversion failed ({first[:200]})") from None
    return [Path(xml_path).with_suffix(".bin")]
