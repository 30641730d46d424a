"""Saving and loading checkpoints of every registered architecture.

The native format is safetensors with the architecture and its configuration in the file's
metadata.  ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` files are read only through
``torch.load(weights_only=True)`` (no code from the file runs), unwrapping the usual
containers: Lightning (``state_dict``), BasicSR (``params_ema`` preferred over ``params``),
``model`` / ``net`` / ``ema`` entries, and ``module.`` / ``model.`` / ``net.`` / ``_orig_mod.``
key prefixes.  A Lightning checkpoint whose ``hyper_parameters`` or callbacks hold Python
objects (an argparse ``Namespace``, a dataclass of the training code) still loads: every such
class is replaced by an inert placeholder while unpickling, and only the tensors are kept.

The architecture is recognised from its keys (:func:`anyir_edge.models.detect_architecture`)
and its configuration inferred from tensor shapes and key counts, never trusted from
metadata: a configuration in the file's metadata must agree with the tensors before anything
is built.  ``config=`` overrides.

Every failure is a :class:`~anyir_edge.errors.CheckpointError` with a one-line message.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .. import artifact
from ..errors import CheckpointError
from ..fsutil import atomic_path
from . import (ARCHITECTURES, CONFIGS, Architecture, ConfigError, NetConfig, RestorationNet, detect_architecture,
               get_architecture, get_config)

FORMAT_VERSION = "1"
# a checkpoint's safetensors metadata uses the engine contract's keys (anyir_edge.artifact)
META_FORMAT = artifact.FORMAT
META_CONFIG = artifact.CONFIG
META_NAME = artifact.NAME
META_ARCH = artifact.ARCH
#: files written before architectures were registered carry a config but no architecture
LEGACY_ARCH = "anyir-paper"
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
_WRAPPERS = ("state_dict", "params_ema", "params", "model_ema", "ema", "model", "net")


def shipped_weights() -> dict[str, Path]:
    """Configuration name -> path of the weights shipped inside the package."""
    return {n: WEIGHTS_DIR / f"{n}.safetensors" for n in CONFIGS if (WEIGHTS_DIR / f"{n}.safetensors").is_file()}


def weights_sha256(model: RestorationNet) -> str:
    """SHA-256 of the model's weights as float32 (names in sorted order with their values).

    It identifies the weights, not the file: a checkpoint and the model loaded from it agree
    whatever the storage (fp16 safetensors are widened on load).  Exported engines, their parity
    certificates and ``anyir-eval`` results carry it, so a result can be matched to the weights
    it came from."""
    h = hashlib.sha256()
    for name, v in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def save_model(model: RestorationNet, path: str | os.PathLike, half: bool = False, metadata: dict | None = None) -> Path:
    """Write ``model`` as safetensors with its config in the metadata (atomically).

    ``half=True`` stores the weights as float16 (loading casts back to float32).
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous().clone()
    meta = {META_FORMAT: FORMAT_VERSION, META_ARCH: type(model).arch, META_CONFIG: json.dumps(model.config.to_dict())}
    if getattr(model, "name", None):
        meta[META_NAME] = model.name
    from .. import __version__

    meta[artifact.VERSION] = __version__
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:  # safetensors raises its own error types for bad headers/data
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({first})") from None


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(4):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, dict):
            key = next((k for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if key is not None:
                obj = obj[key]
                continue
        raise CheckpointError(f"{path}: not a checkpoint (no tensor state dict found)")
    else:
        raise CheckpointError(f"{path}: not a checkpoint (no tensor state dict found)")
    sd = dict(obj)
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


class _Inert(dict):
    """What a class that weights-only loading refuses becomes: it accepts any construction and
    state and does nothing (a dict subclass, so dict-style pickles fill it harmlessly)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, *args, **kwargs):
        return self

    def __setstate__(self, state):
        pass


def _torch_load(path: Path):
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" not in str(e).lower().replace(" ", "_") and "Unsupported global" not in str(e):
            raise
    # Python objects beside the weights (Lightning hyper_parameters, callbacks): inert placeholders
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    stubs = [(type(f"Inert[{n}]", (_Inert,), {}), n) for n in names]
    with torch.serialization.safe_globals(stubs):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = _torch_load(path)
    except Exception as e:  # pickle / zip errors vary by corruption
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in msg.lower().replace(" ", "_") or "Unsupported global" in str(e):
            msg = "it contains Python objects that weights_only loading refuses"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg[:160]})") from None
    return _unwrap(obj, path)


def _mismatch(sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> str | None:
    """None when ``sd`` fits ``expected``; otherwise a short description of the first problem."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        return f"{len(missing)} missing key(s), e.g. {missing[0]!r}"
    if unexpected:
        return f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]!r}"
    for k, shape in expected.items():
        if tuple(sd[k].shape) != shape:
            return f"shape mismatch for {k!r}: file has {tuple(sd[k].shape)}, model expects {shape}"
    return None


def _resolve_config(config, arch: Architecture | None) -> NetConfig:
    if isinstance(config, NetConfig):
        return config
    if isinstance(config, str):
        return get_config(config)
    if isinstance(config, dict):
        if arch is None:
            raise CheckpointError("config= as a dict needs the architecture: the weights match none")
        return arch.config_cls.from_dict(config)
    raise TypeError(f"config must be a name, dict or configuration, not {type(config).__name__}")


def _architecture(sd, meta: dict[str, str], path: Path) -> Architecture:
    if META_ARCH in meta or META_CONFIG in meta:
        name = meta.get(META_ARCH, LEGACY_ARCH)
        if name not in ARCHITECTURES:
            raise CheckpointError(f"{path}: written for architecture {name!r}, which this version does not know "
                                  f"({', '.join(sorted(ARCHITECTURES))})")
        return ARCHITECTURES[name]
    try:
        arch = detect_architecture(sd)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if arch is None:
        raise CheckpointError(f"{path}: the weights are not of a supported architecture "
                              f"({', '.join(sorted(ARCHITECTURES))}); no architecture's signature keys were found")
    return arch


def _config_from_file(sd, meta: dict[str, str], arch: Architecture, path: Path) -> NetConfig:
    """The configuration the tensors describe; metadata, when present, must agree with it."""
    try:
        inferred = arch.infer_config(sd)
    except (ConfigError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}: weights do not describe a valid {arch.name} network ({e})") from None
    if META_CONFIG not in meta:
        return inferred
    try:
        stated = arch.config_cls.from_dict(json.loads(meta[META_CONFIG]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad model config in metadata ({e})") from None
    if stated != inferred and _mismatch(sd, arch.expected_shapes(stated)):
        raise CheckpointError(f"{path}: the config in its metadata does not match its tensors "
                              f"(the tensors describe {json.dumps(inferred.to_dict())})")
    return stated


def _registered_name(cfg: NetConfig) -> str | None:
    return next((n for n, c in CONFIGS.items() if c == cfg), None)


def load_model(name_or_path: str | os.PathLike, fft_mode: str = "fft", config=None, device="cpu") -> RestorationNet:
    """Load a model: a shipped configuration by name (``"anyir-tiny"``) or a checkpoint file
    (our safetensors, a bare state dict, or a training checkpoint such as the authors' Lightning
    ``.ckpt``).  The returned model is in eval mode, float32, on ``device``.
    """
    key = str(name_or_path)
    name = None
    if key in CONFIGS and not Path(key).exists():
        shipped = shipped_weights()
        if key not in shipped:
            have = ", ".join(sorted(shipped)) or "none"
            raise CheckpointError(
                f"no shipped weights for {key!r} (shipped: {have}); pass a checkpoint path, "
                f"or use anyir_edge.models.create({key!r}) for an untrained model"
            )
        path, name = shipped[key], key
    else:
        path = Path(key)
        if not path.exists():
            near = ", ".join(sorted(CONFIGS))
            raise CheckpointError(f"{path}: no such file (and not a model name: {near})")
        if path.is_dir():
            raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    suffix = path.suffix.lower()
    meta: dict[str, str] = {}
    if suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        sd = _read_torch(path)
    else:
        raise CheckpointError(
            f"{path}: unsupported checkpoint type {suffix or '(no suffix)'!r}; "
            f"expected .safetensors or {', '.join(TORCH_SUFFIXES)}"
        )
    if config is not None:
        try:
            cfg = _resolve_config(config, None if isinstance(config, (NetConfig, str)) else _architecture(sd, meta, path))
        except (ValueError, TypeError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"config=: {e}") from None
        arch = get_architecture(cfg)
    else:
        arch = _architecture(sd, meta, path)
        cfg = _config_from_file(sd, meta, arch, path)
    problem = _mismatch(sd, arch.expected_shapes(cfg))
    if problem:
        raise CheckpointError(f"{path}: weights do not fit the {arch.name} model: {problem}")
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) contain NaN/Inf, e.g. {bad[0]!r}")
    name = name or _registered_name(cfg) or meta.get(META_NAME) or None
    model = arch.build(cfg, fft_mode=fft_mode, name=name)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return model.to(device).eval()
