"""OpenVINO: ``.xml`` + ``.bin`` IRs on the OpenVINO runtime (extra ``[openvino]``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError
from .base import Backend, physical_cores


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
        model = core.read_model(path)
        meta = artifact.read_openvino(model)
        cfg = {"INFERENCE_NUM_THREADS": int(threads or physical_cores())}
        dev = (device or "CPU").upper()
        if dev == "CPU":
            cfg["INFERENCE_PRECISION_HINT"] = "f32"  # fp32 parity; bf16/fp16 hints are issue #8
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
