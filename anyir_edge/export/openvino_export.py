"""Verified ONNX -> OpenVINO IR (``NAME.xml`` + ``NAME.bin``), fp32 weights unless ``--fp16`` / ``--int8``.

The ONNX ``metadata_props`` are copied into the IR's rt_info under ``anyir_edge/<key>``
(read back by :class:`anyir_edge.runtime.OpenVINOBackend`).
"""
from __future__ import annotations

from pathlib import Path

from .formats import ExportError

META_PREFIX = "anyir_edge."
RT_SECTION = "anyir_edge"


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
        for k, v in meta.items():
            short = k[len(META_PREFIX):] if k.startswith(META_PREFIX) else k
            model.set_rt_info(str(v), [RT_SECTION, short])
        ov.save_model(model, str(xml_path), compress_to_fp16=bool(compress_to_fp16))
    except ExportError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"OpenVINO conversion failed ({first[:200]})") from None
    return [Path(xml_path).with_suffix(".bin")]


def read_metadata(model) -> dict[str, str]:
    """``anyir_edge.*`` metadata of an OpenVINO model read with ``Core.read_model``."""
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
            out[META_PREFIX + short] = model.get_rt_info([RT_SECTION, short]).astype(str)
        except Exception:
            pass
    if not out:  # fall back to the ONNX frontend's copy of metadata_props
        for short in ("name", "config", "size_multiple", "fft", "version"):
            try:
                if model.has_rt_info(["framework", META_PREFIX + short]):
                    out[META_PREFIX + short] = model.get_rt_info(["framework", META_PREFIX + short]).astype(str)
            except Exception:
                pass
    return out
