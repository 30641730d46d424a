"""A TensorRT engine (``.engine`` / ``.plan`` + its ``NAME.trt.json``) behind the Restorer.

Device memory is held in torch CUDA tensors (torch is a base dependency; a CUDA build of
torch is needed on the GPU machine), bound by name with ``context.set_tensor_address`` and
run with ``context.execute_async_v3`` on torch's current CUDA stream (TensorRT 10 API:
``engine.num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` /
``get_tensor_profile_shape``, ``context.set_input_shape`` / ``get_tensor_shape``).

Before deserialising, the engine's sidecar (written at build time) is compared with this
machine: an engine built by another TensorRT version or on another GPU is refused with a
message saying how to rebuild it.  Inputs whose batch, H or W exceed the optimization
profile's maximum are split (batch) or tiled (H, W: overlapping tiles blended with the
runtime's raised-cosine ramps); inputs below the profile's minimum H or W are refused.

The numpy-only parts (:func:`profile_tiles`, :func:`run_within_profile`) are tested without
TensorRT; the class itself has only been written against the documented API (no GPU here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError
from ..image import blend_tiles, tile_starts
from .base import Backend

DEFAULT_PROFILE_OVERLAP = 32


def profile_tiles(h: int, w: int, max_h: int, max_w: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(y0, x0, th, tw) tiles covering H x W, each at most max_h x max_w, sharing >= overlap."""
    th, tw = min(h, max_h), min(w, max_w)
    ov = max(0, min(int(overlap), th // 4, tw // 4))
    return [(y0, x0, th, tw) for y0 in tile_starts(h, th, ov) for x0 in tile_starts(w, tw, ov)]


def run_within_profile(x: np.ndarray, run_one, min_shape, max_shape, overlap: int = DEFAULT_PROFILE_OVERLAP,
                       where: str = "engine") -> np.ndarray:
    """Run ``run_one`` on (N, C, H, W) ``x`` in pieces that fit the profile [min_shape, max_shape].

    Batch: chunks of at most max N (a batch below min N is padded by repeating its last image
    and cropped back).  H, W above the max: overlapping tiles blended with raised-cosine ramps
    (weights sum to 1).  H or W below the min: refused (the engine cannot run it and extra
    padding would change the result)."""
    n, c, h, w = x.shape
    min_n, _, min_h, min_w = (int(v) for v in min_shape)
    max_n, _, max_h, max_w = (int(v) for v in max_shape)
    if h < min_h or w < min_w:
        raise EngineError(f"{where}: a {h}x{w} input is below the engine's minimum profile shape {min_h}x{min_w}; "
                          f"rebuild with a smaller --min-shape (e.g. 1x3x8x8)")
    if n > max_n:
        return np.concatenate([run_within_profile(x[i:i + max_n], run_one, min_shape, max_shape, overlap, where)
                               for i in range(0, n, max_n)])
    if n < min_n:
        padded = np.concatenate([x, np.repeat(x[-1:], min_n - n, axis=0)])
        return run_within_profile(padded, run_one, min_shape, max_shape, overlap, where)[:n]
    if h <= max_h and w <= max_w:
        return run_one(np.ascontiguousarray(x))
    tiles = profile_tiles(h, w, max_h, max_w, overlap)
    ov = max(0, min(int(overlap), tiles[0][2] // 4, tiles[0][3] // 4))
    return blend_tiles(x, tiles, ov, run_one)


def current_environment(device_id: int = 0) -> dict:
    """TensorRT version, GPU name and compute capability of this machine (None where absent)."""
    env = {"tensorrt": None, "gpu": None, "compute_capability": None, "cuda": None}
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except Exception:
        pass
    try:
        import torch

        env["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(device_id)
            env["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(device_id)
    except Exception:
        pass
    return env


def engine_compatibility(built: dict, env: dict) -> list[str]:
    """Reasons an engine built in ``built`` (its sidecar's "environment") cannot run in ``env``.

    TensorRT engines are tied to the TensorRT version and to the GPU model they were built on
    (unless built version- or hardware-compatible, which this toolkit does not do)."""
    out = []
    if not env.get("tensorrt"):
        out.append("TensorRT is not installed here (pip install anyir-edge[gpu] on a machine with an NVIDIA GPU)")
    elif built.get("tensorrt") != env.get("tensorrt"):
        out.append(f"built with TensorRT {built.get('tensorrt')}, this machine has TensorRT {env.get('tensorrt')}")
    if not env.get("gpu"):
        out.append("no CUDA GPU visible to torch here")
    else:
        if built.get("gpu") != env.get("gpu"):
            out.append(f"built on {built.get('gpu')}, this machine has {env.get('gpu')}")
        if built.get("compute_capability") != env.get("compute_capability"):
            out.append(f"built for compute capability {built.get('compute_capability')}, "
                       f"this GPU is {env.get('compute_capability')}")
    return out


def _cuda_index(device: str | None) -> int:
    dev = (device or "cuda").lower()
    if dev in ("cuda", "gpu", "tensorrt", "trt"):
        return 0
    if dev.startswith("cuda:"):
        try:
            return int(dev.split(":", 1)[1])
        except ValueError:
            pass
    raise EngineError(f"unknown TensorRT device {device!r}; expected cuda or cuda:N (TensorRT runs on NVIDIA GPUs)")


class TensorRTBackend(Backend):
    """A TensorRT engine on one CUDA device (needs ``tensorrt`` 10.x and a CUDA build of torch)."""

    kind = "tensorrt"
    aliases = ("trt", "engine")
    suffixes = (".engine", ".plan")
    export_target = "trt"
    requires = ("tensorrt", "torch")
    install = "pip install anyir-edge[gpu] on a machine with an NVIDIA GPU"
    bytes_per_pixel_per_dim = 95.0  # not measured on a GPU: onnxruntime's figure

    @classmethod
    def is_available(cls) -> str | None:
        why = super().is_available()
        if why is None and not current_environment()["gpu"]:
            why = "no CUDA GPU visible to torch"
        return why

    def __init__(self, path: str, device: str | None = None, threads: int | None = None,
                 overlap: int = DEFAULT_PROFILE_OVERLAP):
        path = str(path)
        if not Path(path).is_file():
            raise EngineError(f"{path}: no such TensorRT engine file")
        side = artifact.read_sidecar(path)
        idx = _cuda_index(device)
        try:
            import tensorrt as trt
        except ImportError:
            raise EngineError(f"{path}: TensorRT is not installed: pip install anyir-edge[gpu] on a machine with "
                              "an NVIDIA GPU") from None
        import torch

        if not torch.cuda.is_available():
            raise EngineError(f"{path}: no CUDA GPU visible to torch (TensorRT engines need an NVIDIA GPU and a "
                              "CUDA build of torch)")
        why = engine_compatibility(side.get("environment", {}), current_environment(idx))
        if why:
            raise EngineError(f"{path}: cannot run this engine here: {'; '.join(why)}; rebuild it on this machine "
                              "with anyir-export --to trt")
        self._trt, self._torch = trt, torch
        self.device = torch.device("cuda", idx)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise EngineError(f"{path}: TensorRT {trt.__version__} cannot deserialize it (corrupt, or built by "
                              "another TensorRT version); rebuild it with anyir-export --to trt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise EngineError(f"{path}: expected one input and one output tensor, found {ins} / {outs}")
        self.input_name, self.output_name = ins[0], outs[0]
        pmin, popt, pmax = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.profile = (tuple(pmin), tuple(popt), tuple(pmax))
        self.overlap = int(overlap)
        self.trt_version = trt.__version__
        self.precision = side.get("settings", {}).get("precision", "fp32")
        super().__init__(path, side.get("metadata", {}))

    def _dtype(self, name):
        t = self.engine.get_tensor_dtype(name)
        return {self._trt.float32: self._torch.float32, self._trt.float16: self._torch.float16}.get(t)

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.device(self.device):
            in_dtype = self._dtype(self.input_name) or torch.float32
            inp = torch.from_numpy(x).to(self.device, dtype=in_dtype).contiguous()
            if not self.context.set_input_shape(self.input_name, tuple(inp.shape)):
                raise EngineError(f"{self.path}: TensorRT refused input shape {tuple(inp.shape)} "
                                  f"(profile {self.profile[0]}..{self.profile[2]})")
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            out = torch.empty(out_shape, dtype=self._dtype(self.output_name) or torch.float32, device=self.device)
            self.context.set_tensor_address(self.input_name, int(inp.data_ptr()))
            self.context.set_tensor_address(self.output_name, int(out.data_ptr()))
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise EngineError(f"{self.path}: TensorRT execution failed")
            stream.synchronize()
            return out.float().cpu().numpy()

    def _run(self, x: np.ndarray) -> np.ndarray:
        return run_within_profile(x, self._run_one, self.profile[0], self.profile[2], self.overlap, self.path)

    def describe(self) -> str:
        name = self._torch.cuda.get_device_name(self.device)
        return f"tensorrt {self.trt_version} ({self.precision}, {name})"


BACKEND = TensorRTBackend
