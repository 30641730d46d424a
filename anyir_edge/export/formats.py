"""The export targets as one table (in the spirit of Ultralytics' exporter), read from the
target modules (:mod:`anyir_edge.export.targets`).

Each :class:`Format` row says its name, aliases, file suffix, the export options it accepts,
which ``--fft`` strategies it can run and whether it needs an NVIDIA GPU.
:func:`resolve` maps a user's ``--to`` (aliases, any case) to a row, with a "did you mean"
for typos; :func:`check_flags` refuses an option the target does not take.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import AnyIRError


class ExportError(AnyIRError):
    """An export that cannot be done (unknown target, refused flag, missing tool, failed step)."""


class ParityError(ExportError):
    """An exported engine whose output does not match the PyTorch reference.  ``failure``: the
    gate it missed, without the file names of the message (None when not given)."""

    def __init__(self, message: str, failure: str | None = None):
        super().__init__(message)
        self.failure = failure


FFT_STRATEGIES = ("auto", "fold", "matmul", "dft")


@dataclass(frozen=True)
class Format:
    """What a target is, as the user sees it (each target module declares its row)."""

    name: str
    aliases: tuple[str, ...]
    suffix: str
    flags: frozenset[str]      # the options it accepts (besides the pipeline's own)
    fft: tuple[str, ...]       # --fft strategies this target can run
    gpu: bool                  # needs an NVIDIA GPU
    description: str
    issue: int | None = None   # set while the target is another issue's work

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def __getattr__(name: str):
    """``FORMATS`` (every target's row, in registry order) and ``FLAGS`` (option -> its command-line
    spelling), read from the targets (:mod:`anyir_edge.export.targets`) on first use."""
    from . import targets

    if name == "FORMATS":
        return tuple(t.format for t in targets.all_targets())
    if name == "FLAGS":
        return {"fft": "--fft", **{k: spec[0][0][0] if spec else k for k, spec in targets.options().items()}}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def names() -> list[str]:
    from . import targets

    return list(targets.REGISTRY)


def resolve(to: str) -> Format:
    """The row for ``to`` (name or alias, case-insensitive); one-line error with a suggestion."""
    key = (to or "").strip().lower().lstrip(".")
    FORMATS = __getattr__("FORMATS")
    for f in FORMATS:
        if key in f.keys:
            return f
    every = [k for f in FORMATS for k in f.keys]
    near = difflib.get_close_matches(key, every, n=1, cutoff=0.5)
    hint = ""
    if near:
        row = next(f for f in FORMATS if near[0] in f.keys)
        hint = f"; did you mean {row.name!r}?"
    raise ExportError(f"unknown export format {to!r} (known: {', '.join(names())}; aliases: "
                      f"{', '.join(a for f in FORMATS for a in f.aliases)}){hint}")


def resolve_fft(fmt: Format, fft: str | None, linear: bool = True) -> str:
    """The concrete strategy for ``--fft`` on ``fmt``: auto -> fold (linear path) else matmul."""
    fft = (fft or "auto").lower()
    if fft not in FFT_STRATEGIES:
        near = difflib.get_close_matches(fft, FFT_STRATEGIES, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ExportError(f"unknown --fft strategy {fft!r} (known: {', '.join(FFT_STRATEGIES)}){hint}")
    if fft == "auto":
        fft = "fold" if linear else "matmul"
    elif fft == "fold" and not linear:
        raise ExportError("--fft fold is exact only for a linear frequency path; this network multiplies spectra "
                          "(use --fft matmul or dft)")
    if fft not in fmt.fft:
        why = {"trt": " (TensorRT before 11.2 cannot run ONNX DFT ops)",
               "openvino": " (not verified for OpenVINO)"}.get(fmt.name, "")
        raise ExportError(f"--fft {fft} is not supported by --to {fmt.name}{why}; use one of: {', '.join(fmt.fft)}")
    return fft


def check_flags(fmt: Format, given: dict[str, object]) -> None:
    """Refuse flags given explicitly (not None) that ``fmt`` does not accept."""
    FLAGS = __getattr__("FLAGS")
    for flag, value in given.items():
        if value is None:
            continue
        if flag not in FLAGS:
            raise ExportError(f"unknown export option {flag!r}")
        if flag not in fmt.flags:
            allowed = ", ".join(FLAGS[f] for f in FLAGS if f in fmt.flags)
            raise ExportError(f"{FLAGS[flag]} is not supported by --to {fmt.name}; it accepts: {allowed}")
