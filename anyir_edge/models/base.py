"""What every architecture provides: a configuration, a network, and a descriptor.

An architecture is one folder under ``anyir_edge/models/`` whose package exports ``ARCH``
(an :class:`Architecture`) and ``CONFIGS`` (its named configurations).  Everything outside
the folder (checkpoints, export, runtime, bench, eval, train) reaches the network only
through the descriptor and the :class:`RestorationNet` interface, never through its class.
This plays the role of spandrel's ``Architecture`` / ``ImageModelDescriptor``.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .spectral import FFT_MODES, check_fft_mode


class ConfigError(ValueError):
    """A configuration that cannot describe a network (bad type, range or combination)."""


class NetConfig:
    """Mixin for an architecture's frozen configuration dataclass.

    Subclasses set ``arch`` (the architecture's name) and may override :meth:`validate`.
    ``from_dict`` checks field names and types before anything is built, so metadata read
    from a file can never make the constructor allocate an absurd network.
    """

    arch: ClassVar[str] = ""
    #: upper bounds checked by :meth:`validate` (field name -> max), a guard against hostile metadata
    LIMITS: ClassVar[dict[str, int]] = {}

    @property
    def size_multiple(self) -> int:
        return 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def layout(self) -> dict:
        """Width and depths for tables: ``width``, ``encoder`` (4 levels), ``decoder`` (levels
        1-3), ``refine``."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: Mapping) -> "NetConfig":
        if not isinstance(d, Mapping):
            raise ConfigError(f"a {cls.arch} config must be a mapping, not {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - set(fields)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(map(str, unknown)))}")
        kw = {}
        for k, v in d.items():
            default = fields[k].default
            kw[k] = _coerce(k, v, default)
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name, top in self.LIMITS.items():
            vals = getattr(self, name)
            if vals is None:
                continue
            for v in vals if isinstance(vals, tuple) else (vals,):
                if not 0 <= v <= top:
                    raise ConfigError(f"config field {name}={getattr(self, name)!r} is out of range (0..{top})")


class UNetConfig(NetConfig):
    """Mixin for the Restormer-family U-Nets' configurations (fields ``dim``, ``blocks``,
    ``dec_blocks``, ``refine_blocks``, ``layernorm``): the decoder depths (the encoder's unless
    ``dec_blocks`` says otherwise), the table layout and the checks they share."""

    @property
    def decoder_blocks(self) -> tuple[int, int, int]:
        return tuple(self.blocks[:3]) if self.dec_blocks is None else tuple(self.dec_blocks)

    def layout(self) -> dict:
        return {"width": self.dim, "encoder": self.blocks, "decoder": self.decoder_blocks,
                "refine": self.refine_blocks}

    def validate(self) -> None:
        super().validate()
        if self.dim < 2 or self.dim % 2:
            raise ConfigError(f"dim must be even and >= 2, got {self.dim}")
        if self.dec_blocks is not None and len(self.dec_blocks) != 3:
            raise ConfigError(f"dec_blocks must give decoder levels 1, 2 and 3, got {list(self.dec_blocks)}")
        if self.layernorm not in ("withbias", "biasfree"):
            raise ConfigError(f"layernorm must be 'withbias' or 'biasfree', got {self.layernorm!r}")


def _coerce(name: str, value, default):
    """``value`` as the type of ``default`` (lists become tuples), or a :class:`ConfigError`."""
    def bad():
        return ConfigError(f"config field {name}={value!r}: expected {type(default).__name__}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad()
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad()
        return value
    if isinstance(default, tuple) or default is None:
        if value is None and default is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"config field {name}={value!r}: expected a list of integers")
        if isinstance(default, tuple) and len(value) != len(default):
            raise ConfigError(f"config field {name}={value!r}: expected {len(default)} integers")
        return tuple(value)
    return value


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad H and W at the bottom/right up to ``multiple``.

    Reflect padding, as the networks need; a side shorter than or equal to its pad (for example
    a 1-pixel or 3-pixel side with multiple 8) cannot be reflected, so that side is
    edge-replicated instead.  Runtimes that pad outside the model must follow this rule
    (``anyir_edge.runtime.image.pad_to_multiple`` is its numpy twin).
    """
    h, w = x.shape[-2], x.shape[-1]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    return x


def pad_indices(n: torch.Tensor, multiple: int) -> torch.Tensor:
    """The row (or column) indices :func:`pad_to_multiple` reads for a side of length ``n`` (a
    0-dim integer tensor): ``0..n-1``, then the reflected rows, or the last row repeated when the
    side is not longer than its pad.  Pure tensor arithmetic, so an exported graph gathers with
    it at any size (``--pad-in-graph``)."""
    p = (multiple - n % multiple) % multiple
    i = torch.arange(n + p)
    return torch.where(i < n, i, torch.where(p < n, 2 * (n - 1) - i, n - 1))


class FrequencyPath(nn.Module):
    """Base of every module with a switchable frequency path (``fft_mode``)."""

    fft_mode: str = "fft"


class RestorationNet(nn.Module):
    """The interface every architecture's network implements.

    ``forward`` takes (B, C, H, W) float images in [0, 1] of any H, W >= 1, pads them to the
    size multiple (:func:`pad_to_multiple`), runs :meth:`forward_padded` and crops back, so
    the output has the input's shape.  ``forward_padded`` is what an exported engine runs.
    """

    arch: ClassVar[str] = ""
    #: the frequency-path implementations that compute this network exactly.  "fold" belongs
    #: only to networks whose frequency path is linear (AnyIR's); a network whose spectra are
    #: multiplied (MoCE-IR) offers "fft" and "matmul"; one without a frequency path takes every
    #: mode (they are all the same network).
    fft_modes: ClassVar[tuple[str, ...]] = FFT_MODES

    def __init__(self, config: NetConfig, fft_mode: str = "fft", name: str | None = None):
        super().__init__()
        self.config = config
        self.name = name
        self._fft_mode = self._check_mode(fft_mode)

    @classmethod
    def _check_mode(cls, mode: str) -> str:
        check_fft_mode(mode)
        if mode not in cls.fft_modes:
            raise ValueError(f"fft_mode {mode!r} is not exact for {cls.arch or cls.__name__} (its frequency path is "
                             f"not linear); use one of: {', '.join(cls.fft_modes)}")
        return mode

    @classmethod
    def fast_fft_mode(cls) -> str:
        """The exact frequency-path mode that runs fastest: "fold" where the path is linear, else "matmul"."""
        return "fold" if "fold" in cls.fft_modes else "matmul"

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    @property
    def in_channels(self) -> int:
        return int(getattr(self.config, "in_channels", 3))

    @property
    def fft_mode(self) -> str:
        return self._fft_mode

    def set_fft_mode(self, mode: str) -> "RestorationNet":
        """Switch every frequency path to ``mode`` ("fft", "fold" or "matmul")."""
        self._fft_mode = self._check_mode(mode)
        for m in self.modules():
            if isinstance(m, FrequencyPath):
                m.fft_mode = mode
        return self

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a (B, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2], x.shape[-1]
        if h < 1 or w < 1:
            raise ValueError(f"image must be at least 1x1, got {h}x{w}")
        out = self.forward_padded(pad_to_multiple(x, self.size_multiple))
        return out[..., :h, :w]


def _no_deploy(model: RestorationNet) -> RestorationNet:
    return model


@dataclass(frozen=True)
class Architecture:
    """Descriptor of one architecture: how to build, recognise, configure and deploy it.

    * ``detect(state_dict)``: True when the keys are this architecture's (keyed on names no
      other supported architecture has, so a Restormer checkpoint is not taken for AnyIR).
    * ``infer_config(state_dict)``: the configuration, from tensor shapes and key counts only;
      raises :class:`ConfigError` when the tensors describe no valid network.
    * ``deploy(model)``: the same function in the form engines run fastest (exact rewrites;
      the parity certificate compares the engine with the *original* model).  It receives a
      copy it may modify and returns the network to trace.
    * ``mobile(model, target=None)``: applied after ``deploy``, the form phone delegates
      (ExecuTorch's XNNPACK, LiteRT, Core ML) take whole, for batch 1
      (:mod:`anyir_edge.models.mobile`); ``target`` names the phone runtime it is for
      (``"executorch"``, ``"litert"``, ``"coreml"``; None: the default form), where one
      operator suits one runtime and not another; None: the architecture has none yet and
      phone targets trace the ``deploy`` form.
    """

    name: str
    title: str
    config_cls: type
    model_cls: type
    detect: Callable[[Mapping[str, torch.Tensor]], bool]
    infer_config: Callable[[Mapping[str, torch.Tensor]], Any]
    deploy: Callable[[RestorationNet], RestorationNet] = _no_deploy
    mobile: Callable[[RestorationNet], RestorationNet] | None = None
    source: str = ""
    licence: str = ""

    def build(self, config, fft_mode: str = "fft", name: str | None = None) -> RestorationNet:
        if not isinstance(config, self.config_cls):
            raise ConfigError(f"{self.name} needs a {self.config_cls.__name__}, got {type(config).__name__}")
        return self.model_cls(config, fft_mode=fft_mode, name=name)

    def expected_shapes(self, config) -> dict[str, tuple[int, ...]]:
        """Every state-dict key of ``config``'s network and its shape (built on the meta device)."""
        with torch.device("meta"):
            model = self.build(config)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    def deploy_copy(self, model: RestorationNet, form: str = "cpu", target: str | None = None) -> RestorationNet:
        """A deploy-form copy of ``model`` (which is left untouched), in eval mode: ``form``
        "cpu" (``deploy``) or "mobile" (``deploy`` then ``mobile`` for ``target``; the "cpu"
        form where the architecture has no mobile form: see :meth:`deploy_form`)."""
        if form not in ("cpu", "mobile"):
            raise ValueError(f"unknown deploy form {form!r}; expected 'cpu' or 'mobile'")
        out = self.deploy(copy.deepcopy(model).eval())
        if form == "mobile" and self.mobile is not None:
            out = self.mobile(out, target=target).eval()
        return out

    def deploy_form(self, form: str) -> str:
        """The form :meth:`deploy_copy` gives for ``form`` ("mobile" falls back to "cpu")."""
        return "mobile" if form == "mobile" and self.mobile is not None else "cpu"


def block_count(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many consecutive numbered children ``prefix.0``, ``prefix.1``, ... the keys hold."""
    idx = {int(k[len(prefix) + 1:].split(".", 1)[0]) for k in sd
           if k.startswith(prefix + ".") and k[len(prefix) + 1:].split(".", 1)[0].isdigit()}
    n = 0
    while n in idx:
        n += 1
    if idx and n != len(idx):
        raise ConfigError(f"{prefix}: block indices are not consecutive ({sorted(idx)[:6]}...)")
    return n


def shape_of(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ConfigError(f"missing key {key!r}")
    return tuple(sd[key].shape)
