"""PyTorch: a checkpoint or a shipped model name run by the reference model itself."""
from __future__ import annotations

import json
import os

import numpy as np

from ... import artifact
from ...errors import EngineError
from .base import Backend


class TorchBackend(Backend):
    """The PyTorch reference (``forward_padded``); ``fft_mode`` by default the network's fastest exact
    one (``fast_fft_mode``: "fold" for AnyIR, "matmul" where spectra are multiplied).

    The one backend that imports torch and the model code, on construction only: an app that
    opens exported engines never loads them (checked by the import contracts in setup.cfg)."""

    kind = "torch"
    aliases = ("pytorch", "pt")
    suffixes = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
    requires = ("torch",)
    install = "pip install torch"
    bytes_per_pixel_per_dim = 150.0

    def __init__(self, model_or_path, device: str | None = None, threads: int | None = None,
                 fft_mode: str | None = None):
        import torch

        from ...models import RestorationNet
        from ...models.checkpoint import load_model

        if not isinstance(model_or_path, (str, os.PathLike, RestorationNet)):
            raise EngineError(f"expected a model path, shipped name or model, got {type(model_or_path).__name__}")
        if isinstance(model_or_path, RestorationNet):
            model, path = model_or_path, f"<{model_or_path.name or 'anyir'}>"
            fft_mode = fft_mode or model.fast_fft_mode()
            if model.fft_mode != fft_mode:  # never switch the caller's model under its feet
                import copy

                model = copy.deepcopy(model)
        else:
            path = str(model_or_path)
            model = load_model(path)
            fft_mode = fft_mode or model.fast_fft_mode()
        dev = torch.device(device or "cpu")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EngineError("device 'cuda' requested but this torch build sees no CUDA GPU")
        self.model = model.to(dev).eval().set_fft_mode(fft_mode)
        self.device = dev
        if threads:
            torch.set_num_threads(int(threads))
        meta = {
            artifact.NAME: model.name or type(model).arch,
            artifact.ARCH: type(model).arch,
            artifact.CONFIG: json.dumps(model.config.to_dict()),
            artifact.SIZE_MULTIPLE: str(model.size_multiple),
            artifact.FFT: fft_mode,
        }
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model.forward_padded(torch.from_numpy(x).to(self.device))
        return y.float().cpu().numpy()

    def describe(self) -> str:
        return f"torch ({self.device})"


BACKEND = TorchBackend
