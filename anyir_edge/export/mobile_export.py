"""What the phone targets (ExecuTorch, LiteRT, Core ML) trace: the architecture's *mobile*
deploy form (:meth:`anyir_edge.models.base.Architecture.deploy_copy`) without its padding,
batch 1, and its ``torch.export`` programs: one with bounded dynamic shapes (H and W multiples
of the size multiple up to ``max_side``) or one per static size."""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import torch

from ..errors import first_line
from ..stdio import silenced
from .formats import ExportError
from .onnx_export import _Padded  # the network without its padding (forward_padded): what an engine runs


class _Float32Island(torch.nn.Module):
    """``module`` in float32 inside a float16 program: its tensor inputs cast up, its output down."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module.float()

    def forward(self, *args):
        args = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
        return self.module(*args).half()


class HalfCompute(torch.nn.Module):
    """``module`` computing in float16 behind float32 input and output, so the program's interface
    (and every runtime's) stays that of the FP32 engine; the submodules of the types in ``keep``
    (:data:`anyir_edge.models.mobile.FP16_UNSAFE`: sums over every pixel) stay float32."""

    def __init__(self, module: torch.nn.Module, keep: tuple[type, ...] = ()):
        super().__init__()
        self.module = module.half()
        for name, sub in list(module.named_modules()):
            if name and isinstance(sub, keep):
                parent, _, leaf = name.rpartition(".")
                setattr(module.get_submodule(parent) if parent else module, leaf, _Float32Island(sub))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.half()).float()


def mobile_module(model, fft: str, half: bool = False, target: str | None = None) -> tuple[torch.nn.Module, str]:
    """(module taking a (1, C, H, W) batch padded to the size multiple, deploy form's name);
    ``half``: weights and activations in float16 but those of
    :data:`anyir_edge.models.mobile.FP16_UNSAFE` (:class:`HalfCompute`)."""
    from ..models import get_architecture

    arch = get_architecture(model)
    net = arch.deploy_copy(model, "mobile", target=target).float().cpu().eval()
    net.set_fft_mode(fft)
    module = _Padded(net).eval()
    if half:
        from ..models.mobile import FP16_UNSAFE

        module = HalfCompute(module, keep=FP16_UNSAFE).eval()
    return module, arch.deploy_form("mobile")


def bounded_spec(model, max_side: int) -> tuple[torch.Tensor, dict]:
    """(example input, ``dynamic_shapes``) of a bounded program: batch 1, H and W dynamic
    multiples of the size multiple up to ``max_side``."""
    from torch.export import Dim

    m = model.size_multiple
    blocks = max_side // m
    shapes = {"x": {2: m * Dim("h_blocks", min=1, max=blocks), 3: m * Dim("w_blocks", min=1, max=blocks)}}
    # example input: H != W, both >= 2 blocks (torch.export specialises sizes 0 and 1), within the bound
    w_blocks = min(9, blocks)
    h_blocks = min(8, w_blocks - 1)
    return torch.rand(1, model.in_channels, h_blocks * m, w_blocks * m), shapes


def bounded_export(model, fft: str, max_side: int, log=lambda s: None, half: bool = False,
                   target: str | None = None):
    """(``torch.export`` program of :func:`mobile_module` with H and W dynamic multiples of the
    size multiple up to ``max_side`` (:func:`bounded_spec`), deploy form's name); ``target``: the
    phone runtime the mobile form is for."""
    from torch.export import export

    module, form = mobile_module(model, fft, half=half, target=target)
    x, shapes = bounded_spec(model, max_side)
    log(f"tracing the {form} form with torch.export (batch 1, H and W multiples of {model.size_multiple} up to "
        f"{max_side}) ...")
    with quiet():
        try:
            return export(module, (x,), dynamic_shapes=shapes), form
        except Exception as e:
            raise ExportError(f"torch.export failed ({first_line(e)})") from None


def static_exports(model, fft: str, sizes, log=lambda s: None, half: bool = False,
                   target: str | None = None) -> tuple[dict, str]:
    """({:func:`anyir_edge.artifact.sized_entry_name`: ``torch.export`` program of
    :func:`mobile_module` at that (H, W)} for each of ``sizes``, deploy form's name); ``target``:
    the phone runtime the mobile form is for."""
    from torch.export import export

    from .. import artifact

    module, form = mobile_module(model, fft, half=half, target=target)
    log(f"tracing the {form} form with torch.export at {len(sizes)} static size(s) ...")
    programs = {}
    with quiet():
        for h, w in sizes:
            try:
                programs[artifact.sized_entry_name(h, w)] = export(module, (torch.rand(1, model.in_channels, h, w),))
            except Exception as e:
                raise ExportError(f"torch.export failed at {h}x{w} ({first_line(e)})") from None
    return programs, form


#: where :func:`quiet` keeps what the converters wrote when a step failed
CONVERTER_LOG = Path(tempfile.gettempdir()) / "anyir-edge-converter.log"


@contextlib.contextmanager
def quiet():
    """The converters kept off the user's terminal (:func:`anyir_edge.stdio.silenced`: warnings,
    prints, log records and their C++ libraries' logs). When the block raises an
    :class:`ExportError`, what they wrote is kept in :data:`CONVERTER_LOG` and the error's one
    line names that file. Callers log their own progress outside the block."""
    with silenced() as written:
        try:
            yield
        except ExportError as e:
            text = written()
            if not text.strip():
                raise
            CONVERTER_LOG.write_text(text)
            raise ExportError(f"{e} (the converter's output: {CONVERTER_LOG})") from None
