"""Model registry: named AnyIR configurations.

=============  =====  ==============  ===========  ========  ========  ==============
name           C      encoder blocks  decoder 1-3  refine    params    GMACs @224x224
=============  =====  ==============  ===========  ========  ========  ==============
``anyir``      32     2, 3, 3, 4      2, 3, 3      4         6.168M    19.05
``anyir-tiny`` 16     1, 2, 2, 4      1, 2, 2      2         1.443M    3.67
=============  =====  ==============  ===========  ========  ========  ==============

Both use attention heads 1/2/4/8 per level, GDFN expansion 2.66 and GatedDA expansion 2.
``anyir`` reproduces the paper's Table 6 (6.29M parameters, 19 GMACs at 224x224).
``anyir-tiny`` halves the width (parameters and MACs scale ~C^2) and spends its blocks at
the cheap low-resolution levels: one block at full resolution instead of two, four in the
latent level; it is the configuration meant for CPUs and phones.
MACs are counted with ``torch.utils.flop_counter`` and reported as FLOPs / 2
(see :func:`anyir_edge.models.complexity.count_macs`).
"""
from __future__ import annotations

import difflib

from .anyir import AnyIR, AnyIRConfig
from .spectral import FFT_MODES

CONFIGS: dict[str, AnyIRConfig] = {
    "anyir": AnyIRConfig(dim=32, enc_blocks=(2, 3, 3, 4), dec_blocks=(2, 3, 3), refine_blocks=4),
    "anyir-tiny": AnyIRConfig(dim=16, enc_blocks=(1, 2, 2, 4), dec_blocks=(1, 2, 2), refine_blocks=2),
}


def list_models() -> list[str]:
    return sorted(CONFIGS)


def get_config(name: str) -> AnyIRConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        near = difflib.get_close_matches(name, CONFIGS, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(f"unknown model {name!r} (known: {', '.join(list_models())}){hint}") from None


def create(name: str = "anyir", fft_mode: str = "fft", **overrides) -> AnyIR:
    """Build a randomly initialised model by configuration name.

    ``overrides`` replace config fields, e.g. ``create("anyir", dim=24)``.
    """
    cfg = get_config(name)
    if overrides:
        cfg = AnyIRConfig.from_dict({**cfg.to_dict(), **overrides})
    return AnyIR(cfg, fft_mode=fft_mode, name=name)


__all__ = ["AnyIR", "AnyIRConfig", "CONFIGS", "FFT_MODES", "create", "get_config", "list_models"]
