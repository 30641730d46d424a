"""Saving and loading AnyIR checkpoints.

The native format is safetensors with the model configuration in the file's metadata, so a
file alone rebuilds the right model.  ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` files are read
only through ``torch.load(weights_only=True)`` (no arbitrary code runs), unwrapping the usual
containers: Lightning (``state_dict``), BasicSR (``params_ema`` preferred over ``params``),
``model`` / ``net`` / ``ema`` entries, and ``module.`` / ``model.`` / ``net.`` / ``_orig_mod.``
key prefixes.  Their configuration is inferred by matching keys and shapes against the
registered configurations, unless ``config=`` is given.

Every failure is a :class:`~anyir_edge.errors.CheckpointError` with a one-line message.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..fsutil import atomic_path
from . import CONFIGS, AnyIRConfig, get_config
from .anyir import AnyIR

FORMAT_VERSION = "1"
META_FORMAT = "anyir_edge.format"
META_CONFIG = "anyir_edge.config"
META_NAME = "anyir_edge.name"
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
_WRAPPERS = ("state_dict", "params_ema", "params", "model_ema", "ema", "model", "net")


def shipped_weights() -> dict[str, Path]:
    """Configuration name -> path of the weights shipped inside the package."""
    return {n: WEIGHTS_DIR / f"{n}.safetensors" for n in CONFIGS if (WEIGHTS_DIR / f"{n}.safetensors").is_file()}


def weights_sha256(model: AnyIR) -> str:
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


def save_model(model: AnyIR, path: str | os.PathLike, half: bool = False, metadata: dict | None = None) -> Path:
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
    meta = {META_FORMAT: FORMAT_VERSION, META_CONFIG: json.dumps(model.config.to_dict())}
    if getattr(model, "name", None):
        meta[META_NAME] = model.name
    from .. import __version__

    meta["anyir_edge.version"] = __version__
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


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip errors vary by corruption
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in msg.lower().replace(" ", "_") or "Unsupported global" in str(e):
            msg = "it contains Python objects that weights_only loading refuses"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg[:160]})") from None
    return _unwrap(obj, path)


def _expected_shapes(cfg: AnyIRConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = AnyIR(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


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


def _resolve_config(config) -> AnyIRConfig:
    if isinstance(config, AnyIRConfig):
        return config
    if isinstance(config, str):
        return get_config(config)
    if isinstance(config, dict):
        return AnyIRConfig.from_dict(config)
    raise TypeError(f"config must be a name, dict or AnyIRConfig, not {type(config).__name__}")


def load_model(name_or_path: str | os.PathLike, fft_mode: str = "fft", config=None, device="cpu") -> AnyIR:
    """Load a model: a shipped configuration by name (``"anyir-tiny"``) or a checkpoint file.

    The returned model is in eval mode, float32, on ``device``.
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
        cfg = _resolve_config(config)
        problem = _mismatch(sd, _expected_shapes(cfg))
    elif META_CONFIG in meta:
        try:
            cfg = AnyIRConfig.from_dict(json.loads(meta[META_CONFIG]))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: bad model config in metadata ({e})") from None
        name = name or meta.get(META_NAME)
        problem = _mismatch(sd, _expected_shapes(cfg))
    else:
        cfg, problem, best = None, None, None
        for cand_name, cand in CONFIGS.items():
            expected = _expected_shapes(cand)
            p = _mismatch(sd, expected)
            if p is None:
                cfg, name, problem = cand, cand_name, None
                break
            distance = len(set(expected) ^ set(sd))
            if best is None or distance < best:
                best, problem = distance, p
        if cfg is None:
            raise CheckpointError(
                f"{path}: does not match any AnyIR configuration ({', '.join(CONFIGS)}): {problem}; "
                "pass config= if it is a custom one"
            )
    if problem:
        raise CheckpointError(f"{path}: weights do not fit the model: {problem}")
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} tensor(s) contain NaN/Inf, e.g. {bad[0]!r}")
    model = AnyIR(cfg, fft_mode=fft_mode, name=name)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.to(device).eval()
