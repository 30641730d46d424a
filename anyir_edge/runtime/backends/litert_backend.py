"""LiteRT (TensorFlow Lite): ``.tflite`` models on LiteRT's interpreter with its XNNPACK CPU
delegate (extra ``[litert]``: the runtime alone is ``ai-edge-litert``, no torch).

A ``.tflite`` from ``anyir-export --to litert`` has one signature per input size it was built
for (litert-torch converts static shapes), named :func:`anyir_edge.artifact.sized_entry_name`
and listed in its :data:`~anyir_edge.artifact.SIZES` metadata (the model's metadata entry
:data:`~anyir_edge.artifact.TFLITE_METADATA_NAME`).  The backend reads the sizes from the
signatures themselves, so a model converted elsewhere (NCHW, 1 x 3 x H x W float32) runs too;
:class:`~anyir_edge.runtime.Restorer` runs an image whole when it pads to one of them and tiles
it with the largest square one that fits otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError, first_line
from .base import Backend, check_signature, physical_cores, warn_untrusted


def _sig(name: str, details: dict) -> tuple:
    """A signature tensor as :func:`check_signature` takes it (H and W are checked separately)."""
    dims = [int(v) for v in details["shape"]]
    dtype = "float32" if details["dtype"] is np.float32 else str(details["dtype"])
    return (name, dtype, [None, dims[1], None, None] if len(dims) == 4 else dims)


class LiteRTBackend(Backend):
    """A ``.tflite`` model on LiteRT's interpreter, batch 1 per call (a batch runs image by image)."""

    kind = "litert"
    aliases = ("tflite", "tfl")
    suffixes = (".tflite",)
    export_target = "litert"
    requires = ("ai_edge_litert",)
    install = "pip install anyir-edge[litert]"
    bytes_per_pixel_per_dim = 150.0  # not measured yet: PyTorch eager's figure

    def __init__(self, path: str, device: str | None = None, threads: int | None = None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise EngineError("LiteRT is not installed: pip install anyir-edge[litert]") from None
        path = str(path)
        if not Path(path).is_file():
            raise EngineError(f"{path}: no such LiteRT model")
        if (device or "cpu").lower() != "cpu":
            raise EngineError(f"the litert backend runs on the CPU (XNNPACK), not on {device!r}")
        self.threads = int(threads or physical_cores())
        try:
            content = Path(path).read_bytes()
            meta = artifact.read_tflite(content)
            self.interpreter = Interpreter(model_content=content, num_threads=self.threads)
            signatures = self.interpreter.get_signature_list()
        except EngineError as e:
            raise EngineError(f"{path}: {e}") from None
        except Exception as e:  # the interpreter raises ValueError / RuntimeError with long texts
            raise EngineError(f"{path}: LiteRT cannot load it ({first_line(e)})") from None
        if not signatures:
            raise EngineError(f"{path}: the model has no signatures (export it with anyir-export --to litert)")
        self.runners: dict[tuple[int, int], tuple[object, str, str]] = {}
        for name in signatures:
            runner = self.interpreter.get_signature_runner(name)
            ins, outs = runner.get_input_details(), runner.get_output_details()

            check_signature(f"{path} (signature {name!r})", [_sig(k, d) for k, d in ins.items()],
                            [_sig(k, d) for k, d in outs.items()], meta, warn=False)
            dims = [int(v) for v in next(iter(ins.values()))["shape"]]
            if dims[0] != 1:
                raise EngineError(f"{path}: signature {name!r} takes a batch of {dims[0]}, the runtime feeds 1 image")
            self.runners[(dims[2], dims[3])] = (runner, next(iter(ins)), next(iter(outs)))
        warn_untrusted(path, meta)  # once, not per signature
        super().__init__(path, meta)
        self._set_sizes(self.runners, "signatures")

    def _run(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        entry = self.runners.get((h, w))
        if entry is None:
            raise self._wrong_size(h, w)
        runner, name_in, name_out = entry
        return self._run_each(x, lambda one: runner(**{name_in: one})[name_out], "LiteRT")

    def describe(self) -> str:
        return f"litert (XNNPACK, {self.threads} threads, sizes {artifact.format_sizes(self.sizes)})"


BACKEND = LiteRTBackend
