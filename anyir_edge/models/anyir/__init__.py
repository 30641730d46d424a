"""``anyir``: the authors' AnyIR layout (Amazingren/AnyIR ``net/anyir.py``; see :mod:`.model`).

================  ====  ==============  ======  =======  ==============  ==============================
name              C     blocks          refine  params   GMACs @224x224  where it comes from
================  ====  ==============  ======  =======  ==============  ==============================
``anyir``         28    3, 5, 5, 7      4       5.736M   26.25           their constructor default and
                                                                          ``__main__`` (098dcd1)
``anyir-l``       32    4, 6, 6, 8      4       8.513M   39.19           their earlier default (864b784)
``anyir-tiny``    16    1, 2, 2, 4      2       1.092M   4.39            ours: the CPU / phone size
================  ====  ==============  ======  =======  ==============  ==============================

Decoder depths repeat the encoder's (levels 1-3), heads 1/2/4/8, FFN expansion 2, GatedDA
expansion 8/3 with a 7x7 depthwise conv, bias-free convolutions, LayerNorm with bias.
Neither of their configurations is the paper's 6.29M / 19 GMACs (Table 6); see
``anyir_edge.models.anyir_paper`` for the layout that is.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..base import Architecture, ConfigError, block_count, shape_of
from ..deploy import CHANNEL_MULTIPLE, replace_modules, split_gated_ffns
from .mobile import mobile
from .model import AnyIR, AnyIRConfig, GatedDA

CONFIGS = {
    "anyir": AnyIRConfig(dim=28, blocks=(3, 5, 5, 7), refine_blocks=4),
    "anyir-l": AnyIRConfig(dim=32, blocks=(4, 6, 6, 8), refine_blocks=4),
    "anyir-tiny": AnyIRConfig(dim=16, blocks=(1, 2, 2, 4), refine_blocks=2),
}

_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
_DECODER = ("decoder_level1", "decoder_level2", "decoder_level3")
# stages whose blocks carry each level's heads (level 1's also run decoder 1 and refinement)
_HEAD_STAGES = (("encoder_level1", "decoder_level1", "refinement"), ("encoder_level2", "decoder_level2"),
                ("encoder_level3", "decoder_level3"), ("latent",))


def detect(sd: Mapping) -> bool:
    """Keys only this layout has: the GatedDA of the authors' code (``attn.gatedcnn.W_exp``)
    beside Restormer's ``patch_embed`` and ``reduce_dim_level3``."""
    return ("patch_embed.proj.weight" in sd and "reduce_dim_level3.weight" in sd
            and any(k.endswith(".attn.gatedcnn.W_exp.weight") for k in sd))


def _pick(candidates, fits) -> float:
    for c in candidates:
        if fits(c):
            return float(c)
    raise ConfigError("no single expansion ratio reproduces every block's width")


def infer_config(sd: Mapping) -> AnyIRConfig:
    """The configuration from tensor shapes and key counts (any dim, depths, heads, refinement,
    FFN / GatedDA expansion, kernel, biases and LayerNorm kind)."""
    dim, cin = shape_of(sd, "patch_embed.proj.weight")[:2]
    blocks = tuple(block_count(sd, p) for p in _LEVELS)
    dec = tuple(block_count(sd, p) for p in _DECODER)
    default = AnyIRConfig()
    heads = []
    for lvl, stages in enumerate(_HEAD_STAGES):
        found = [shape_of(sd, f"{s}.0.attn.temperature")[0] for s in stages if f"{s}.0.attn.temperature" in sd]
        heads.append(int(found[0]) if found else default.heads[lvl])
    ffn = [(shape_of(sd, k)[0], shape_of(sd, k)[1]) for k in sd if k.endswith(".ffn.project_out.weight")]
    ffn_exp = _pick([2.0, 2.66] + [h / w for w, h in ffn[:1]], lambda e: all(int(w * e) == h for w, h in ffn))
    gates = [(shape_of(sd, k)[1], shape_of(sd, k)[0]) for k in sd if k.endswith(".attn.gatedcnn.W_exp.weight")]
    gate_exp = _pick([8 / 3] + [h / c for c, h in gates],
                     lambda e: all(int(round(e * c)) == h for c, h in gates))
    kernel = next((shape_of(sd, k)[-1] for k in sd if k.endswith(".attn.gatedcnn.W_depth.weight")), 7)
    try:
        return AnyIRConfig.from_dict({
            "dim": int(dim), "in_channels": int(cin), "blocks": list(blocks),
            "dec_blocks": None if dec == blocks[:3] else list(dec), "refine_blocks": block_count(sd, "refinement"),
            "heads": heads, "ffn_expansion": ffn_exp, "gate_expansion": gate_exp, "gate_kernel": int(kernel),
            "bias": "output.bias" in sd,
            "layernorm": "withbias" if any(k.endswith(".norm1.body.bias") for k in sd) else "biasfree",
        })
    except ValueError as e:
        raise ConfigError(str(e)) from None


class DeployGatedDA(nn.Module):
    """:class:`GatedDA` with its BatchNorm folded away and alpha zero-padded to a multiple of 8.

    * BatchNorm in eval is a per-channel affine s*x + t: ``W_exp(s*x + t)`` is a 1x1 conv on x
      with weights scaled by s and bias ``W_exp @ t``; the normalised input's spatial mean and
      variance are ``s*mean(x) + t`` and ``s^2 var(x)``.
    * alpha's depthwise 7x7 conv gets a channel count onnxruntime's blocked (NCHWc) kernels
      take: the extra alpha channels have zero expansion filters, zero depthwise filters and
      zero ``W_gate`` inputs, so they are 0 and add 0.
    Exact in real arithmetic; the certificate checks it in float."""

    def __init__(self, g: GatedDA, multiple: int = CHANNEL_MULTIPLE):
        super().__init__()
        bn, (c, _, n) = g.norm, g.splits
        npad = -(-n // multiple) * multiple
        with torch.no_grad():
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            t = bn.bias - bn.running_mean * s
            w = g.W_exp.weight[:, :, 0, 0]
            self.W_exp = nn.Conv2d(c, 2 * c + npad, 1, bias=True)
            self.W_exp.weight.zero_()
            self.W_exp.bias.zero_()
            self.W_exp.weight[: 2 * c + n, :, 0, 0] = w * s.view(1, -1)
            self.W_exp.bias[: 2 * c + n] = w @ t
            k = g.W_depth.kernel_size[0]
            depth = nn.Conv2d(npad, npad, k, padding=k // 2, groups=npad, bias=False)
            depth.weight.zero_()
            depth.weight[:n] = g.W_depth.weight
            gate = nn.Conv2d(c + npad, c, 1, bias=False)
            gate.weight.zero_()
            gate.weight[:, : c + n] = g.W_gate.weight
        self.alpha_channels = n  # before padding
        self.register_buffer("scale", s.detach().view(1, -1, 1, 1).clone())
        self.register_buffer("shift", t.detach().view(1, -1, 1, 1).clone())
        self.gate = g  # W_proj, tau and the split sizes
        self.gate.norm = nn.Identity()
        self.gate.W_exp = nn.Identity()
        self.gate.W_depth, self.gate.W_gate, self.gate.splits = depth, gate, (c, c, npad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mu).pow(2).mean(dim=(2, 3), keepdim=True)
        return self.gate.adapt(x, self.W_exp(x), self.scale * mu + self.shift, self.scale.square() * var)


def deploy(model: AnyIR) -> AnyIR:
    """BatchNorm folded into GatedDA's expansion, alpha and every FFN zero-padded to multiples of 8."""
    replace_modules(model, GatedDA, DeployGatedDA)
    return split_gated_ffns(model)


ARCH = Architecture(
    name="anyir",
    title="AnyIR (Ren et al. 2025), the layout of the authors' released code",
    config_cls=AnyIRConfig,
    model_cls=AnyIR,
    detect=detect,
    infer_config=infer_config,
    deploy=deploy,
    mobile=mobile,
    source="github.com/Amazingren/AnyIR net/anyir.py (read, not copied; the repository has no licence)",
    licence="this implementation: Apache-2.0; the authors' weights: no licence stated",
)

__all__ = ["ARCH", "CONFIGS", "AnyIR", "AnyIRConfig"]
