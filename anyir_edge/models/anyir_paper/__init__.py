"""``anyir-paper``: our reading of the AnyIR paper (see :mod:`.model`).

=====================  =====  ==============  ===========  ======  ========  ==============
name                   C      encoder blocks  decoder 1-3  refine  params    GMACs @224x224
=====================  =====  ==============  ===========  ======  ========  ==============
``anyir-paper``        32     2, 3, 3, 4      2, 3, 3      4       6.168M    19.05
``anyir-paper-tiny``   16     1, 2, 2, 4      1, 2, 2      2       1.443M    3.67
=====================  =====  ==============  ===========  ======  ========  ==============

Heads 1/2/4/8 per level, GDFN expansion 2.66, GatedDA expansion 2.  ``anyir-paper``
reproduces the paper's Table 6 (6.29M parameters, 19 GMACs at 224x224).
"""
from __future__ import annotations

from collections.abc import Mapping

from ..base import Architecture, ConfigError, block_count, shape_of
from ..deploy import split_gated_ffns
from .model import AnyIRPaper, AnyIRPaperConfig

CONFIGS = {
    "anyir-paper": AnyIRPaperConfig(dim=32, enc_blocks=(2, 3, 3, 4), dec_blocks=(2, 3, 3), refine_blocks=4),
    "anyir-paper-tiny": AnyIRPaperConfig(dim=16, enc_blocks=(1, 2, 2, 4), dec_blocks=(1, 2, 2), refine_blocks=2),
}

_SIGNATURE = ("embed.weight", "output.weight")
_LEVELS = ("enc1", "enc2", "enc3", "latent")


def detect(sd: Mapping) -> bool:
    """Keys only this layout has: a DAB's ``fusion.lam`` and GatedDA's ``gate.expand``."""
    return all(k in sd for k in _SIGNATURE) and any(k.endswith(".fusion.lam") for k in sd) and any(
        k.endswith(".gate.expand.weight") for k in sd)


def infer_config(sd: Mapping) -> AnyIRPaperConfig:
    dim, cin = shape_of(sd, "embed.weight")[:2]
    enc = tuple(block_count(sd, p) for p in _LEVELS)
    dec = tuple(block_count(sd, p) for p in ("dec1", "dec2", "dec3"))
    default = AnyIRPaperConfig()
    heads = []
    for lvl, stages in enumerate((("enc1", "dec1", "refine"), ("enc2", "dec2"), ("enc3", "dec3"), ("latent",))):
        found = [sd[f"{s}.0.attn.temperature"].shape[0] for s in stages if f"{s}.0.attn.temperature" in sd]
        heads.append(int(found[0]) if found else default.heads[lvl])
    ffn = default.ffn_expansion
    probe = next((k for k in sd if k.endswith(".ffn.project_out.weight")), None)
    if probe is not None:
        width = shape_of(sd, probe.replace("project_out", "project_in"))[1]
        hidden = shape_of(sd, probe)[1]
        if int(width * ffn) != hidden:
            ffn = hidden / width
    try:
        return AnyIRPaperConfig.from_dict({"dim": int(dim), "in_channels": int(cin), "enc_blocks": list(enc),
                                           "dec_blocks": list(dec), "refine_blocks": block_count(sd, "refine"),
                                           "heads": heads, "ffn_expansion": float(ffn)})
    except ValueError as e:
        raise ConfigError(str(e)) from None


def deploy(model: AnyIRPaper) -> AnyIRPaper:
    return split_gated_ffns(model)


ARCH = Architecture(
    name="anyir-paper",
    title="AnyIR, read from the paper (Ren et al. 2025) before code was published",
    config_cls=AnyIRPaperConfig,
    model_cls=AnyIRPaper,
    detect=detect,
    infer_config=infer_config,
    deploy=deploy,
    source="anyir-edge's own reading of arXiv 2407.13372",
    licence="Apache-2.0 (this project)",
)

__all__ = ["ARCH", "CONFIGS", "AnyIRPaper", "AnyIRPaperConfig"]
