"""ExecuTorch: ``.pte`` programs (XNNPACK delegate) on ExecuTorch's Python runtime (extra ``[executorch]``).

A ``.pte`` from ``anyir-export --to executorch`` has either one method ``forward`` that runs
one image at a time at any H x W that is a multiple of its size multiple, up to the bound it
was built for (``anyir_edge.max_side``: ExecuTorch plans its memory for that size), or, built
with ``--sizes``, one static method per size (:func:`anyir_edge.artifact.sized_entry_name`,
listed in ``anyir_edge.sizes``; the backend reads the sizes from the methods themselves).
:class:`~anyir_edge.runtime.Restorer` tiles anything larger, or of another size.  Its metadata
live in the program as the constant method :data:`anyir_edge.artifact.PTE_METADATA_METHOD`
(:func:`anyir_edge.artifact.decode_pte_metadata`).

ExecuTorch's Python bindings exchange torch tensors, so this backend imports torch (the C++
runtime an app links does not); the phone runtime is ExecuTorch's own C++ library.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import artifact
from ...errors import EngineError, first_line
from ...stdio import silenced
from .base import Backend, check_signature, physical_cores, warn_untrusted


def _set_threads(threads: int) -> int:
    """Size ExecuTorch's (process-wide) XNNPACK thread pool; returns the size in effect. Its
    first use prints cpuinfo's probing and the reset (C++ lines on standard error): silenced."""
    from executorch.extension.pybindings import portable_lib as pl

    with silenced():
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
            with silenced():  # the import logs torchao's optional kernels it could not load
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
            meta = {}
            if artifact.PTE_METADATA_METHOD in names:
                raw = program.load_method(artifact.PTE_METADATA_METHOD).execute([])[0]
                meta = artifact.decode_pte_metadata(bytes(raw.numpy().tobytes()))
            # one dynamic 'forward', or one static method per size (then every other method is one)
            entries = ["forward"] if "forward" in names else sorted(names - {artifact.PTE_METADATA_METHOD})
            if not entries:
                raise EngineError(f"{path}: the program has no 'forward' method and no method per size")
            methods = {name: program.load_method(name) for name in entries}
        except EngineError:
            raise
        except Exception as e:  # ExecuTorch raises RuntimeError / ValueError with long texts
            raise EngineError(f"{path}: ExecuTorch cannot load it ({first_line(e)})") from None
        self.program = program

        def sig(info):  # a dynamic program reports its upper bound as its planned size
            sizes = list(info.sizes())
            code = info.dtype()  # c10::ScalarType: 6 is Float
            dtype = "float32" if code == 6 or "Float" in str(code) else f"scalar type {code}"
            return ("image", dtype, [None, sizes[1], None, None] if len(sizes) == 4 else sizes), sizes

        by_size: dict[tuple[int, int], object] = {}
        for name, method in methods.items():
            mm = method.metadata
            n_in, n_out = mm.num_inputs(), mm.num_outputs()
            where = path if name == "forward" else f"{path} (method {name!r})"
            if n_in != 1 or n_out != 1:
                raise EngineError(f"{where}: not an image-restoration program: {n_in} input(s), {n_out} output(s)")
            (tin, dims), (tout, _) = sig(mm.input_tensor_meta(0)), sig(mm.output_tensor_meta(0))
            check_signature(where, [tin], [tout], meta, warn=False)
            if dims[0] != 1:
                raise EngineError(f"{where}: takes a batch of {dims[0]}, the runtime feeds 1 image")
            if name != "forward":  # a dynamic forward reports its upper bound, not a size it is built for
                by_size[(dims[2], dims[3])] = method
        warn_untrusted(path, meta)  # once, not per method
        super().__init__(path, meta)
        if "forward" in methods:
            self.method = methods["forward"]
            bound = meta.get(artifact.MAX_SIDE)
            if bound is not None and not (bound.isdigit() and int(bound) > 0):
                raise EngineError(f"{path}: bad {artifact.MAX_SIDE} metadata {bound!r}")
            self.max_side = int(bound) if bound else None  # a program from elsewhere: ExecuTorch checks its sizes
        else:
            self.by_size = by_size
            self._set_sizes(by_size, "methods")

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.sizes:
            method = self.by_size.get(tuple(x.shape[-2:]))
            if method is None:
                raise self._wrong_size(*x.shape[-2:])
        else:
            method = self.method
        return self._run_each(x, lambda one: method.execute([torch.from_numpy(one)])[0].numpy(), "ExecuTorch")

    def describe(self) -> str:
        shapes = f", H and W <= {self.max_side}" if self.max_side else ""
        if self.sizes:
            shapes = f", sizes {artifact.format_sizes(self.sizes)}"
        return f"executorch (XNNPACK, {self.threads} threads{shapes})"


BACKEND = ExecuTorchBackend
