"""Model registry: architectures and their named configurations.

Every subpackage of ``anyir_edge.models`` that exports ``ARCH`` (an
:class:`~anyir_edge.models.base.Architecture`) and ``CONFIGS`` (name -> configuration) is an
architecture; adding one is adding a folder.  Registered today:

* ``anyir`` (:mod:`.anyir`): the layout of the authors' released code. Configurations
  ``anyir`` (theirs, 5.74M parameters), ``anyir-l`` (their earlier default, 8.51M) and
  ``anyir-tiny`` (ours, for CPUs and phones).
* ``anyir-paper`` (:mod:`.anyir_paper`): our reading of the paper before code was published.
  Configurations ``anyir-paper`` (the paper's Table 6 cost) and ``anyir-paper-tiny``.
* ``promptir`` (:mod:`.promptir`): PromptIR (Potlapalli et al. 2023), the layout of the authors'
  code. Configuration ``promptir`` (theirs, 35.59M parameters, 132.23 GMACs at 224x224).
* ``moce-ir`` (:mod:`.moce_ir`): MoCE-IR (Zamfir et al. 2025), the layout of the authors' code.
  Configurations ``moce-ir-s`` (11.48M parameters, 39.36 GMACs at 224x224 with every expert
  computed) and ``moce-ir`` (25.35M, 85.24 GMACs), both theirs (``src/options.py``).

MACs are counted with ``torch.utils.flop_counter`` and reported as FLOPs / 2
(see :func:`anyir_edge.models.complexity.count_macs`).
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil

from .base import Architecture, ConfigError, NetConfig, RestorationNet, pad_to_multiple
from .spectral import FFT_MODES


def _discover() -> tuple[dict[str, Architecture], dict[str, NetConfig]]:
    archs: dict[str, Architecture] = {}
    configs: dict[str, NetConfig] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        arch = getattr(mod, "ARCH", None)
        if not isinstance(arch, Architecture):
            continue
        if arch.name in archs:
            raise RuntimeError(f"architecture {arch.name!r} is registered twice")
        archs[arch.name] = arch
        for name, cfg in getattr(mod, "CONFIGS", {}).items():
            if name in configs:
                raise RuntimeError(f"model name {name!r} is registered by two architectures")
            if not isinstance(cfg, arch.config_cls):
                raise RuntimeError(f"{name!r}: its config is not a {arch.config_cls.__name__}")
            configs[name] = cfg
    return archs, configs


ARCHITECTURES, CONFIGS = _discover()


def list_models() -> list[str]:
    return sorted(CONFIGS)


def list_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def get_config(name: str) -> NetConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        near = difflib.get_close_matches(name, CONFIGS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown model {name!r} (known: {', '.join(list_models())}){hint}") from None


def get_architecture(name_or_config) -> Architecture:
    """The descriptor for an architecture name, a configuration or a network."""
    key = getattr(name_or_config, "arch", name_or_config)
    if isinstance(name_or_config, RestorationNet):
        key = type(name_or_config).arch
    try:
        return ARCHITECTURES[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {key!r} (known: {', '.join(list_architectures())})") from None


def detect_architecture(state_dict) -> Architecture | None:
    """The one architecture whose ``detect`` accepts these keys (None if none does)."""
    hits = [a for a in ARCHITECTURES.values() if a.detect(state_dict)]
    if len(hits) > 1:
        raise ConfigError(f"the weights look like several architectures ({', '.join(a.name for a in hits)})")
    return hits[0] if hits else None


def create(name: str = "anyir", fft_mode: str = "fft", **overrides) -> RestorationNet:
    """Build a randomly initialised model by configuration name.

    ``overrides`` replace config fields, e.g. ``create("anyir", dim=24)``.
    """
    cfg = get_config(name)
    if overrides:
        cfg = type(cfg).from_dict({**cfg.to_dict(), **overrides})
    return get_architecture(cfg).build(cfg, fft_mode=fft_mode, name=name)


__all__ = ["ARCHITECTURES", "Architecture", "CONFIGS", "ConfigError", "FFT_MODES", "NetConfig", "RestorationNet",
           "create", "detect_architecture", "get_architecture", "get_config", "list_architectures", "list_models",
           "pad_to_multiple"]
