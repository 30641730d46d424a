"""ExecuTorch: ``.pte`` programs (XNNPACK delegate) on ExecuTorch's Python runtime (extra ``[executorch]``).

A ``.pte`` from ``anyir-export --to executorch`` runs one image at a time at any H x W that is
a multiple of its size multiple, up to the bound it was built for (``anyir_edge.max_side``:
ExecuTorch plans its memory for that size); :class:`~anyir_edge.runtime.Restorer` tiles
anything larger.  Its metadata live in the program as the constant method
:data:`anyir_edge.artifact.PTE_METADATA_METHOD` (:func:`anyir_edge.artifact.decode_pte_metadata`).

ExecuTorch's Python bindings exchange torch tensors, so this backend imports torch (the C++
runtime an app links does not); the phone runtime is ExecuTorch's own C++ library.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError, first_line
from .base import Backend, check_signature, physical_cores


def _set_threads(threads: int) -> int:
    """Size ExecuTorch's (process-wide) XNNPACK thread pool; returns the size in effect."""
    from executorch.extension.pybindings import portable_lib as pl

    if pl._threadpool_get_thread_count() != threads:
        pl._unsafe_reset_threadpool(threads)
    return int(pl._threadpool_get_thread_count())


class ExecuTorchBackend(Backend):
    """A ``.pte`` program on ExecuTorch's runtime, batch 1 per call (a batch runs image by image)."""

    kind = "executorch"
    aliases = ("et", "pte")
    suffixes = (".pte",)
    export_target = "executorch"
    requires = ("executorch", "torch")
    install = "pip install anyir-edge[executorch]"
    bytes_per_pixel_per_dim = 150.0  # not measured yet: PyTorch eager's figure

    def __init__(self, path: str, device: str | None = None, threads: int | None = None):
        try:
            import torch  # noqa: F401  (ExecuTorch's bindings take torch tensors)
            from executorch.runtime import Runtime
        except ImportError:
            raise EngineError("ExecuTorch is not installed: pip install anyir-edge[executorch]") from None
        path = str(path)
        if not Path(path).is_file():
            raise EngineError(f"{path}: no such ExecuTorch program")
        if (device or "cpu").lower() != "cpu":
            raise EngineError(f"the executorch backend runs on the CPU (XNNPACK), not on {device!r}")
        self.threads = _set_threads(int(threads or physical_cores()))
        try:
            program = Runtime.get().load_program(path)
            names = set(program.method_names)
            if "forward" not in names:
                raise EngineError(f"{path}: the program has no 'forward' method")
            meta = {}
            if artifact.PTE_METADATA_METHOD in names:
                raw = program.load_method(artifact.PTE_METADATA_METHOD).execute([])[0]
                meta = artifact.decode_pte_metadata(bytes(raw.numpy().tobytes()))
            self.method = program.load_method("forward")
        except EngineError:
            raise
        except Exception as e:  # ExecuTorch raises RuntimeError / ValueError with long texts
            raise EngineError(f"{path}: ExecuTorch cannot load it ({first_line(e)})") from None
        self.program = program
        mm = self.method.metadata
        n_in, n_out = mm.num_inputs(), mm.num_outputs()
        if n_in != 1 or n_out != 1:
            raise EngineError(f"{path}: not an image-restoration program: {n_in} input(s), {n_out} output(s)")

        def sig(info):  # a dynamic program reports its upper bound as its planned size
            sizes = list(info.sizes())
            code = info.dtype()  # c10::ScalarType: 6 is Float
            dtype = "float32" if code == 6 or "Float" in str(code) else f"scalar type {code}"
            return ("image", dtype, [None, sizes[1], None, None] if len(sizes) == 4 else sizes)

        check_signature(path, [sig(mm.input_tensor_meta(0))], [sig(mm.output_tensor_meta(0))], meta)
        bound = meta.get(artifact.MAX_SIDE)
        if bound is not None and not (bound.isdigit() and int(bound) > 0):
            raise EngineError(f"{path}: bad {artifact.MAX_SIDE} metadata {bound!r}")
        self.max_side = int(bound) if bound else None  # a program from elsewhere: ExecuTorch checks its sizes
        super().__init__(path, meta)

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self._run_each(x, lambda one: self.method.execute([torch.from_numpy(one)])[0].numpy(), "ExecuTorch")

    def describe(self) -> str:
        bound = f", H and W <= {self.max_side}" if self.max_side else ""
        return f"executorch (XNNPACK, {self.threads} threads{bound})"


BACKEND = ExecuTorchBackend
