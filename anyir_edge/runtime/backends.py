"""Engines behind a :class:`~anyir_edge.runtime.Restorer`: one class per runtime.

Every backend runs the network *without* padding: ``run(x)`` takes float32 NCHW RGB in
[0, 1] whose H and W are multiples of ``size_multiple`` and returns the same shape.
Calls are serialised with a per-backend lock (engines keep per-call state and one run
already uses all intra-op threads), which makes a backend safe to share between threads.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from .errors import EngineError, EngineWarning

META_PREFIX = "anyir_edge."
# Peak activation bytes per input pixel per unit of model width (float32), for auto tiling.
# Measured on anyir-tiny at 224 and 512 (peak RSS increase / pixels / width): PyTorch eager
# 123-139, onnxruntime (arena on, patterns off) ~80.  Backends carry their own, with headroom.
BYTES_PER_PIXEL_PER_DIM = 150.0


# x86 flags that decide how INT8 engines compute (VNNI: exact u8 x s8 dot products; without it
# AVX2 / AVX-512 saturate pairs of products at 16 bits: anyir_edge.export.precision)
INT8_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info() -> dict:
    """This machine's CPU: model name and the INT8-relevant ISA flags it has (Linux /proc/cpuinfo)."""
    import platform

    model, flags = None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model name") and model is None:
                    model = val.strip()
                elif key in ("flags", "Features") and flags is None:
                    flags = set(val.split())
    except OSError:
        pass
    flags = flags or set()
    return {"model": model or platform.processor() or platform.machine(), "int8_isa": [f for f in INT8_ISA_FLAGS if f in flags]}


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads counted once)."""
    try:
        avail = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        avail = os.cpu_count() or 1
    cores = None
    try:
        import psutil  # optional

        cores = psutil.cpu_count(logical=False)
    except Exception:
        try:
            pairs, phys = set(), "0"
            with open("/proc/cpuinfo") as f:
                for line in f:
                    key, _, val = line.partition(":")
                    key, val = key.strip(), val.strip()
                    if key == "physical id":
                        phys = val
                    elif key == "core id":
                        pairs.add((phys, val))
            cores = len(pairs) or None
        except OSError:
            cores = None
    return max(1, min(cores or avail, avail))


class Backend:
    """Base class: ``run`` one padded batch; metadata describes the model."""

    kind = "base"
    bytes_per_pixel_per_dim = BYTES_PER_PIXEL_PER_DIM

    def __init__(self, path: str, metadata: dict[str, str]):
        self.path = path
        self.metadata = metadata
        self._lock = threading.Lock()
        cfg = metadata.get(META_PREFIX + "config")
        self.config = json.loads(cfg) if cfg else {}
        self.name = metadata.get(META_PREFIX + "name") or Path(str(path)).stem
        self.size_multiple = int(metadata.get(META_PREFIX + "size_multiple", 8))
        self.fft = metadata.get(META_PREFIX + "fft", "")
        self._check_int8_isa()

    def _check_int8_isa(self) -> None:
        """Warn when an INT8 CPU engine with full-range (8-bit) weights runs on an x86 CPU without
        VNNI, where u8 x s8 products saturate (anyir_edge.export.precision): its output can be far
        from what its certificate says (measured: 13 dB instead of 35 on AVX2)."""
        md = self.metadata
        if self.kind not in ("onnxruntime", "openvino") or md.get(META_PREFIX + "precision") != "int8":
            return
        if md.get(META_PREFIX + "int8_weight_bits", "8") != "8":
            return
        isa = cpu_info()["int8_isa"]
        if "avx2" in isa and not set(VNNI_FLAGS) & set(isa):
            import warnings

            warnings.warn(f"{self.path}: INT8 engine with 8-bit weights on a CPU without VNNI ({', '.join(isa)}): "
                          "u8 x s8 products saturate and the output may be wrong; re-export it with this "
                          "version (7-bit weights): anyir-export --int8", EngineWarning, stacklevel=3)

    @property
    def bytes_per_pixel(self) -> float:
        return self.bytes_per_pixel_per_dim * float(self.config.get("dim", 32))

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.kind}"

    def close(self) -> None:
        pass


class TorchBackend(Backend):
    """The PyTorch reference (``forward_padded``); ``fft_mode`` "fold" by default (exact, fastest)."""

    kind = "torch"
    bytes_per_pixel_per_dim = 150.0

    def __init__(self, model_or_path, device: str | None = None, threads: int | None = None,
                 fft_mode: str = "fold"):
        import torch

        from ..models import RestorationNet
        from ..models.checkpoint import load_model

        if isinstance(model_or_path, RestorationNet):
            model, path = model_or_path, f"<{model_or_path.name or 'anyir'}>"
            if model.fft_mode != fft_mode:  # never switch the caller's model under its feet
                import copy

                model = copy.deepcopy(model)
        else:
            path = str(model_or_path)
            model = load_model(path)
        dev = torch.device(device or "cpu")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EngineError("device 'cuda' requested but this torch build sees no CUDA GPU")
        self.model = model.to(dev).eval().set_fft_mode(fft_mode)
        self.device = dev
        if threads:
            torch.set_num_threads(int(threads))
        meta = {
            META_PREFIX + "name": model.name or type(model).arch,
            META_PREFIX + "arch": type(model).arch,
            META_PREFIX + "config": json.dumps(model.config.to_dict()),
            META_PREFIX + "size_multiple": str(model.size_multiple),
            META_PREFIX + "fft": fft_mode,
        }
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model.forward_padded(torch.from_numpy(x).to(self.device))
        return y.float().cpu().numpy()

    def describe(self) -> str:
        return f"torch ({self.device})"


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
    for p in chosen:  # options: anyir_edge.export.trt.ort_provider_options (engine cache, fp16, profile)
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
    bytes_per_pixel_per_dim = 95.0

    def __init__(self, path: str, device: str | None = None, threads: int | None = None,
                 low_memory: bool = True, trt_settings=None):
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
        meta = _onnx_metadata(path)
        fft = meta.get(META_PREFIX + "fft", "")
        options = None
        if trt_settings is not None:  # a TrtSettings: the same settings as anyir-export --to trt
            from ..export.trt import ort_provider_options

            options = ort_provider_options(trt_settings)
        providers = _ort_providers(device, ort.get_available_providers(), fft, options)
        try:
            self.session = ort.InferenceSession(path, sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise EngineError(f"{path}: onnxruntime cannot load it ({first[:200]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.threads = so.intra_op_num_threads
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def describe(self) -> str:
        return f"onnxruntime ({', '.join(p.replace('ExecutionProvider', '') for p in self.session.get_providers())}, {self.threads} threads)"


def _onnx_metadata(path: str) -> dict[str, str]:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise EngineError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    return {p.key: p.value for p in model.metadata_props}


class OpenVINOBackend(Backend):
    """An OpenVINO IR (``.xml`` + ``.bin``) on the OpenVINO runtime (extra ``[openvino]``)."""

    kind = "openvino"
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
        from ..export.openvino_export import read_metadata

        meta = read_metadata(model)
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


def TensorRTBackend(*args, **kwargs):  # noqa: N802 - lazy: importing anyir_edge never needs TensorRT
    from .trt_backend import TensorRTBackend as _TensorRTBackend

    return _TensorRTBackend(*args, **kwargs)


BACKENDS = {"torch": TorchBackend, "onnxruntime": OnnxRuntimeBackend, "openvino": OpenVINOBackend,
            "tensorrt": TensorRTBackend}
BACKEND_ALIASES = {"pytorch": "torch", "pt": "torch", "ort": "onnxruntime", "onnx": "onnxruntime",
                   "ov": "openvino", "trt": "tensorrt", "engine": "tensorrt"}
TRT_SUFFIXES = (".engine", ".plan")


def backend_for(path_or_name: str, backend: str | None) -> str:
    """The backend name: ``backend`` (or an alias), else from the suffix."""
    if backend:
        key = BACKEND_ALIASES.get(backend.lower(), backend.lower())
        if key not in BACKENDS:
            import difflib

            near = difflib.get_close_matches(key, list(BACKENDS) + list(BACKEND_ALIASES), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise EngineError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)}){hint}")
        return key
    suffix = Path(str(path_or_name)).suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix == ".xml":
        return "openvino"
    if suffix in TRT_SUFFIXES:
        return "tensorrt"
    return "torch"


def check_suffix(path_or_name: str, backend: str) -> None:
    suffix = Path(str(path_or_name)).suffix.lower()
    want = {"onnxruntime": (".onnx",), "openvino": (".xml",), "tensorrt": TRT_SUFFIXES}.get(backend)
    if want and suffix not in want:
        raise EngineError(f"{path_or_name}: the {backend} backend needs a {want[0]} file; "
                          f"export one with: anyir-export --to "
                          f"{ {'onnxruntime': 'onnx', 'tensorrt': 'trt'}.get(backend, backend)} --model ...")
    if backend == "torch" and suffix in (".onnx", ".xml", *TRT_SUFFIXES):
        raise EngineError(f"{path_or_name}: the torch backend needs a checkpoint (.safetensors/.pth) or a model name")

