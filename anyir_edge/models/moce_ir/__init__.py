"""``moce-ir``: MoCE-IR, the authors' mixture of complexity experts (eduardzamfir/MoCE-IR
``src/net/moce_ir.py`` @ a1a6e74; see :mod:`.model`).

==============  ====  ==========  =======  ======  ========  =======  ===========================
name            C     blocks      decoder  refine  experts   params   where it comes from
==============  ====  ==========  =======  ======  ========  =======  ===========================
``moce-ir-s``   32    4, 6, 6, 8  2, 4, 4  4       4, top-1  11.47M   their ``--model MoCE_IR_S``
``moce-ir``     48    4, 6, 6, 8  2, 4, 4  4       4, top-1  25.35M   their ``--model MoCE_IR``
==============  ====  ==========  =======  ======  ========  =======  ===========================

Both: heads 1/2/4/8, FFN expansion 2, ``rank_type="spread"`` (expert ranks width/8 .. width,
patches 4/8/16/32), decoder without biases, LayerNorm with bias (``src/options.py``, as their
``train.py`` / ``test.py`` pass it).  MACs at 224 x 224 (``count_macs``, FFTs not counted):
moce-ir-s 39.36 G with every expert computed (the exportable form), 32.46-36.59 G for the chosen
experts only (their eager path; which experts depends on the image); moce-ir 85.24 G,
70.85-79.56 G (see :mod:`.model`).

The frequency path multiplies spectra, so it cannot be folded: ``fft_mode`` is "fft" or "matmul".
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..base import Architecture, ConfigError, block_count, shape_of
from ..deploy import split_gated_ffns
from .mobile import mobile
from .model import MoCEIR, MoCEIRConfig

CONFIGS = {
    "moce-ir-s": MoCEIRConfig(dim=32),
    "moce-ir": MoCEIRConfig(dim=48),
}

_ENCODER = ("enc.0.0.layers", "enc.1.0.layers", "enc.2.0.layers", "latent.layers")
_DECODER = ("dec.2.2.layers", "dec.1.2.layers", "dec.0.2.layers")  # levels 1, 2, 3 (their list is deepest first)
# blocks whose attention carries each level's heads
_HEADS = ((f"{_ENCODER[0]}.0.mixer", f"{_DECODER[0]}.0.shared", "refinement.layers.0.mixer"),
          (f"{_ENCODER[1]}.0.mixer", f"{_DECODER[1]}.0.shared"),
          (f"{_ENCODER[2]}.0.mixer", f"{_DECODER[2]}.0.shared"),
          (f"{_ENCODER[3]}.0.mixer",))


def detect(sd: Mapping) -> bool:
    """Keys only this layout has: the frequency embedding that steers the experts."""
    return "patch_embed.proj.weight" in sd and "freq_embed.high_conv.0.conv.weight" in sd


def _expert_ranks(sd: Mapping, dec: tuple[int, int, int]) -> tuple[int, dict[int, tuple[int, ...]]]:
    """The number of experts and, per decoder level with blocks, their ranks (all blocks must agree)."""
    experts, ranks = None, {}
    for lvl, prefix in enumerate(_DECODER):
        for i in range(dec[lvl]):
            base = f"{prefix}.{i}.adapter.experts"
            n = block_count(sd, base)
            got = tuple(shape_of(sd, f"{base}.{e}.0.proj.0.weight")[0] for e in range(n))
            if experts is None:
                experts = n
            if n != experts or ranks.setdefault(lvl, got) != got:
                raise ConfigError(f"{base}: its experts differ from the other decoder blocks'")
    return experts or MoCEIRConfig().experts, ranks


def _rank_rule(dim: int, experts: int, ranks: dict[int, tuple[int, ...]]) -> tuple[str, int]:
    """A (rank_type, rank) of their code that gives these ranks at every level."""
    default = MoCEIRConfig()
    if not ranks:
        return default.rank_type, default.rank
    r0 = next(iter(ranks.values()))[0]
    candidates = [("spread", default.rank), ("constant", r0), ("lin", r0), ("double", r0), ("exp", r0)]
    candidates += [("fact", r) for r in range(1, 9) if math.factorial(r) == r0]
    for rank_type, rank in candidates:
        cfg = MoCEIRConfig(dim=dim, experts=experts, rank_type=rank_type, rank=rank)
        if all(cfg.expert_ranks(dim * 2 ** lvl) == got for lvl, got in ranks.items()):
            return rank_type, rank
    raise ConfigError(f"expert ranks {ranks} follow none of their rank rules")


def _ffn_expansion(sd: Mapping) -> float:
    shapes = [shape_of(sd, k)[:2] for k in sd if k.endswith(".ffn.project_out.weight")]
    candidates = [2.0, 2.66] + [h / w for w, h in shapes[:1]]
    for e in candidates:
        if all(int(w * e) == h for w, h in shapes):
            return float(e)
    raise ConfigError("no single FFN expansion reproduces every block's width")


def infer_config(sd: Mapping) -> MoCEIRConfig:
    """The configuration from tensor shapes and key counts: dim, depths, heads, FFN expansion,
    number of experts and their rank rule, biases, LayerNorm kind.  ``top_k`` is not visible in
    the weights and stays 1 (both of their configurations); pass ``config=`` for another."""
    dim, cin = shape_of(sd, "patch_embed.proj.weight")[:2]
    blocks = tuple(block_count(sd, p) for p in _ENCODER)
    dec = tuple(block_count(sd, p) for p in _DECODER)
    default = MoCEIRConfig()
    heads = []
    for lvl, attns in enumerate(_HEADS):
        found = [shape_of(sd, f"{a}.temperature")[0] for a in attns if f"{a}.temperature" in sd]
        heads.append(int(found[0]) if found else default.heads[lvl])
    experts, ranks = _expert_ranks(sd, dec)
    rank_type, rank = _rank_rule(int(dim), experts, ranks)
    norms = [k for k in sd if k.endswith(".norms.0.body.weight")]
    try:
        return MoCEIRConfig.from_dict({
            "dim": int(dim), "in_channels": int(cin), "blocks": list(blocks), "dec_blocks": list(dec),
            "refine_blocks": block_count(sd, "refinement.layers"), "heads": heads,
            "ffn_expansion": _ffn_expansion(sd), "experts": experts, "rank_type": rank_type, "rank": rank,
            "bias": "output.bias" in sd,
            "layernorm": "biasfree" if norms and not any(k[:-6] + "bias" in sd for k in norms) else "withbias",
        })
    except ValueError as e:
        raise ConfigError(str(e)) from None


def deploy(model: MoCEIR) -> MoCEIR:
    """Every GDFN (encoder, decoder, refinement) as two zero-padded branches (exact)."""
    return split_gated_ffns(model)


ARCH = Architecture(
    name="moce-ir",
    title="MoCE-IR (Zamfir et al. 2025), the layout of the authors' released code",
    config_cls=MoCEIRConfig,
    model_cls=MoCEIR,
    detect=detect,
    infer_config=infer_config,
    deploy=deploy,
    mobile=mobile,
    source="github.com/eduardzamfir/MoCE-IR src/net/moce_ir.py (read, not copied)",
    licence="this implementation: Apache-2.0; the authors' code and weights: Apache-2.0",
)

__all__ = ["ARCH", "CONFIGS", "MoCEIR", "MoCEIRConfig"]
