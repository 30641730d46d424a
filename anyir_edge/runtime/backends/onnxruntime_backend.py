"""ONNX Runtime: ``.onnx`` engines (CPU; the CUDA and TensorRT providers where installed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError
from .base import Backend, check_signature, physical_cores


def _ort_providers(device: str | None, available: list[str], fft: str, options: dict | None = None) -> list:
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    dev = (device or "auto").lower()
    dev_id = 0
    if ":" in dev:
        dev, _, idx = dev.partition(":")
        dev_id = int(idx or 0)
    if dev == "cpu":
        wanted = ["CPUExecutionProvider"]
    elif dev in ("cuda", "gpu"):
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    elif dev in ("tensorrt", "trt"):
        wanted = order
    elif dev == "auto":
        wanted = order
    else:
        raise EngineError(f"unknown onnxruntime device {device!r}; expected auto, cpu, cuda[:N] or tensorrt")
    if fft == "dft":
        # ONNX DFT ops: not run by TensorRT < 11.2 nor by onnxruntime's CUDA provider
        if dev not in ("auto", "cpu"):
            raise EngineError("this ONNX model keeps DFT ops (--fft dft), which the CUDA/TensorRT providers "
                              "cannot run; export with --fft fold for GPUs")
        wanted = ["CPUExecutionProvider"]
    chosen = [p for p in wanted if p in available]
    if dev not in ("auto", "cpu") and wanted[0] not in available:
        raise EngineError(f"{wanted[0]} is not available in this onnxruntime build "
                          f"(available: {', '.join(available)}); install onnxruntime-gpu (pip install anyir-edge[gpu])")
    out = []
    for p in chosen:  # options: e.g. anyir_edge.export.trt.ort_provider_options (engine cache, fp16, profile)
        out.append((p, {**(options or {}).get(p, {}), "device_id": dev_id}) if p in order[:2] else p)
    return out or ["CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """An ONNX model on onnxruntime: graph optimisation ALL, intra-op threads = physical cores,
    providers TensorRT > CUDA > CPU when present.

    Memory (``low_memory=True``): memory patterns off (the shapes are dynamic; a pattern is a
    whole-graph block per shape), CPU arena kept on.  Measured on anyir-tiny at 512x512, one
    thread, peak RSS increase: arena on + patterns off 328 MB; arena on + patterns on 651 MB;
    arena off + patterns off 824-890 MB (every tensor a fresh malloc); PyTorch eager 492 MB.
    """

    kind = "onnxruntime"
    aliases = ("ort", "onnx")
    suffixes = (".onnx",)
    export_target = "onnx"
    requires = ("onnxruntime", "onnx")
    install = "pip install onnxruntime"
    bytes_per_pixel_per_dim = 95.0

    def __init__(self, path: str, device: str | None = None, threads: int | None = None,
                 low_memory: bool = True, provider_options: dict | None = None):
        import onnxruntime as ort

        path = str(path)
        if not Path(path).is_file():
            raise EngineError(f"{path}: no such ONNX file")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or physical_cores())
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if low_memory:
            so.enable_mem_pattern = False
            so.enable_cpu_mem_arena = True
        meta = artifact.read_onnx(path)
        fft = meta.get(artifact.FFT, "")
        # provider_options: per-provider dicts (anyir-export's TensorRT settings give them:
        # anyir_edge.export.trt.ort_provider_options)
        providers = _ort_providers(device, ort.get_available_providers(), fft, provider_options)
        try:
            self.session = ort.InferenceSession(path, sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EngineError(f"{path}: onnxruntime cannot load it ({first[:200]})") from None
        def sig(args):
            return [(a.name, "float32" if a.type == "tensor(float)" else a.type.replace("tensor(", "").rstrip(")"),
                     None if a.shape is None else [d if isinstance(d, int) else None for d in a.shape]) for a in args]

        check_signature(path, sig(self.session.get_inputs()), sig(self.session.get_outputs()), meta)
        self.input_name = self.session.get_inputs()[0].name
        self.threads = so.intra_op_num_threads
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def describe(self) -> str:
        return f"onnxruntime ({', '.join(p.replace('ExecutionProvider', '') for p in self.session.get_providers())}, {self.threads} threads)"


BACKEND = OnnxRuntimeBackend
