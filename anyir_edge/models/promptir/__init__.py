"""``promptir``: PromptIR (Potlapalli et al., NeurIPS 2023), the layout of the authors' code
(va1shn9v/PromptIR ``net/model.py``; see :mod:`.model`).

============  ====  ==========  ======  =======  ==============  ==================================
name          C     blocks      refine  params   GMACs @224x224  where it comes from
============  ====  ==========  ======  =======  ==============  ==================================
``promptir``  48    4, 6, 6, 8  4       35.592M  132.23          their ``PromptIR(decoder=True)``
                                                                 (``train.py``; 106159a)
============  ====  ==========  ======  =======  ==============  ==================================

Decoder depths repeat the encoder's (levels 1-3), heads 1/2/4/8 (the three prompt-fusing
``noise_level`` blocks: 4), FFN expansion 2.66, bias-free convolutions, LayerNorm with bias;
prompts of 64 / 128 / 320 channels, 5 per block, 64 / 32 / 16 pixels square.  The count
includes the six 1x1 convs their constructor builds and their forward never calls (215,296
parameters), since their checkpoints hold them.  MACs as everywhere here: the flop counter's
convolutions and matrix products, FLOPs / 2 (the prompts' weighted sums and resizing are
element-wise work, not counted).
"""
from __future__ import annotations

from collections.abc import Mapping

from ..base import Architecture, ConfigError, block_count, shape_of
from ..deploy import split_gated_ffns
from .model import PromptGen, PromptIR, PromptIRConfig
from .mobile import mobile

CONFIGS = {
    "promptir": PromptIRConfig(),
}

_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
_DECODER = ("decoder_level1", "decoder_level2", "decoder_level3")
# stages whose blocks carry each level's heads (level 1's also run decoder 1 and refinement)
_HEAD_STAGES = (("encoder_level1", "decoder_level1", "refinement"), ("encoder_level2", "decoder_level2"),
                ("encoder_level3", "decoder_level3"), ("latent",))
_SIGNATURE = ("patch_embed.proj.weight", "prompt1.prompt_param", "prompt2.prompt_param", "prompt3.prompt_param",
              "noise_level1.attn.temperature", "reduce_noise_level1.weight", "output.weight")


def detect(sd: Mapping) -> bool:
    """Keys only this layout has: the three prompt blocks (``promptN.prompt_param``) and the
    prompt-fusing ``noise_levelN`` blocks, with Restormer's own attention (no AnyIR GatedDA)."""
    return all(k in sd for k in _SIGNATURE) and not any(".attn.gatedcnn." in k for k in sd)


def _ffn_expansion(sd: Mapping) -> float:
    """The one ratio e with int(width * e) == hidden for every FFN (theirs: 2.66)."""
    ffn = [shape_of(sd, k)[:2] for k in sd if k.endswith(".ffn.project_out.weight")]  # (width, hidden)
    if not ffn:
        raise ConfigError("no FFN found")
    lo = max(h / w for w, h in ffn)
    hi = min((h + 1) / w for w, h in ffn)
    for e in (2.66, 2.0, 4.0, 3.0, lo, round(lo, 4), round(lo, 2), (lo + hi) / 2):
        if all(int(w * e) == h for w, h in ffn):
            return float(e)
    raise ConfigError("no single FFN expansion ratio reproduces every block's width")


def infer_config(sd: Mapping) -> PromptIRConfig:
    """The configuration from tensor shapes and key counts (any dim, depths, heads, refinement,
    FFN expansion, biases, LayerNorm kind, prompt widths / counts / sizes, unused convs)."""
    dim, cin = shape_of(sd, "patch_embed.proj.weight")[:2]
    blocks = tuple(block_count(sd, s) for s in _LEVELS)
    dec = tuple(block_count(sd, s) for s in _DECODER)
    default = PromptIRConfig()
    heads = []
    for lvl, stages in enumerate(_HEAD_STAGES):
        found = [shape_of(sd, f"{s}.0.attn.temperature")[0] for s in stages if f"{s}.0.attn.temperature" in sd]
        heads.append(int(found[0]) if found else default.heads[lvl])
    prompts = [shape_of(sd, f"prompt{i}.prompt_param") for i in (1, 2, 3)]
    if any(len(s) != 5 or s[0] != 1 or s[3] != s[4] for s in prompts):
        raise ConfigError(f"prompt_param shapes {prompts} are not (1, L, P, S, S)")
    unused = tuple(int(shape_of(sd, f"chnl_reduce{i}.weight")[0]) if f"chnl_reduce{i}.weight" in sd else 0
                   for i in (1, 2, 3))
    try:
        return PromptIRConfig.from_dict({
            "dim": int(dim), "in_channels": int(cin), "blocks": list(blocks),
            "dec_blocks": None if dec == blocks[:3] else list(dec), "refine_blocks": block_count(sd, "refinement"),
            "heads": heads,
            "noise_heads": [int(shape_of(sd, f"noise_level{i}.attn.temperature")[0]) for i in (1, 2, 3)],
            "ffn_expansion": _ffn_expansion(sd),
            "bias": "output.bias" in sd,
            "layernorm": "withbias" if any(k.endswith(".norm1.body.bias") for k in sd) else "biasfree",
            "prompt_dims": [int(s[2]) for s in prompts], "prompt_lens": [int(s[1]) for s in prompts],
            "prompt_sizes": [int(s[3]) for s in prompts], "unused_widths": list(unused),
        })
    except ValueError as e:
        raise ConfigError(str(e)) from None


def deploy(model: PromptIR) -> PromptIR:
    """Every FFN zero-padded to multiples of 8 and split in two branches (no Split node)."""
    return split_gated_ffns(model)


ARCH = Architecture(
    name="promptir",
    title="PromptIR (Potlapalli et al. 2023), the layout of the authors' released code",
    config_cls=PromptIRConfig,
    model_cls=PromptIR,
    detect=detect,
    infer_config=infer_config,
    deploy=deploy,
    mobile=mobile,
    source="github.com/va1shn9v/PromptIR net/model.py (read, not copied)",
    licence="this implementation: Apache-2.0; the authors' weights: academic, non-commercial use only (their licence)",
)

__all__ = ["ARCH", "CONFIGS", "PromptGen", "PromptIR", "PromptIRConfig"]
