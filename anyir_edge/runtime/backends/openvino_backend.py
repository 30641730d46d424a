"""OpenVINO: ``.xml`` + ``.bin`` IRs on the OpenVINO runtime (extra ``[openvino]``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError
from .base import Backend, check_signature, physical_cores


def compile_config(device: str, threads: int) -> dict:
    """The plugin settings our engines run with on ``device`` (upper case): ``threads`` inference
    threads and, on the CPU, float32 arithmetic (fp32 parity; on CPUs with AMX / AVX512-BF16 the
    plugin's default is bf16; bf16/fp16 hints are issue #8)."""
    cfg = {"INFERENCE_NUM_THREADS": threads}
    if device == "CPU":
        cfg["INFERENCE_PRECISION_HINT"] = "f32"
    return cfg


class OpenVINOBackend(Backend):
    """An OpenVINO IR (``.xml`` + ``.bin``) on the OpenVINO runtime (extra ``[openvino]``)."""

    kind = "openvino"
    aliases = ("ov",)
    suffixes = (".xml",)
    export_target = "openvino"
    requires = ("openvino",)
    install = "pip install anyir-edge[openvino]"
    bytes_per_pixel_per_dim = 120.0  # not measured: between the two above

    def __init__(self, path: str, device: str | None = None, threads: int | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise EngineError("OpenVINO is not installed: pip install anyir-edge[openvino]") from None
        path = str(path)
        if not Path(path).is_file():
            raise EngineError(f"{path}: no such OpenVINO IR file")
        core = ov.Core()
        try:
            model = core.read_model(path)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EngineError(f"{path}: not a readable OpenVINO IR ({first[:200]})") from None
        meta = artifact.read_openvino(model)

        def sig(ports):
            out = []
            for p in ports:
                shape = p.get_partial_shape()
                dims = None if shape.rank.is_dynamic else [d.get_length() if d.is_static else None for d in shape]
                t = p.get_element_type().get_type_name()
                out.append((p.get_any_name() if p.get_names() else "?", "float32" if t == "f32" else t, dims))
            return out

        check_signature(path, sig(model.inputs), sig(model.outputs), meta)
        dev = (device or "CPU").upper()
        cfg = compile_config(dev, int(threads or physical_cores()))
        try:
            self.compiled = core.compile_model(model, dev, cfg)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EngineError(f"{path}: OpenVINO cannot compile it for {dev} ({first[:200]})") from None
        self.request = self.compiled.create_infer_request()
        self.device = dev
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        res = self.request.infer({0: x})
        return np.array(next(iter(res.values())), dtype=np.float32)

    def describe(self) -> str:
        return f"openvino ({self.device})"


BACKEND = OpenVINOBackend
