"""``python -m anyir_edge``: small utilities.

``info``     the model configurations, their cost and the shipped weights.
``degrade``  write a degraded copy of an image (seeded), e.g. to try ``anyir-restore`` on.
"""
from __future__ import annotations

import argparse
import sys

from .cli import ArgumentParser


def _info(args) -> int:
    from . import __version__, shipped_weights
    from .models import CONFIGS, create
    from .models.complexity import count_macs, count_params

    shipped = shipped_weights()
    print(f"anyir-edge {__version__}")
    print(f"| model | architecture | width | encoder | decoder | refine | params | GMACs @{args.size} | shipped weights |")
    print("|---|---|---|---|---|---|---|---|---|")
    import torch

    for name, cfg in CONFIGS.items():
        with torch.device("meta"):  # counts need shapes only: no weights, no arithmetic
            m = create(name)
        w = shipped.get(name)
        lay = cfg.layout()
        print(
            f"| {name} | {cfg.arch} | {lay['width']} | {list(lay['encoder'])} | {list(lay['decoder'])} | {lay['refine']} "
            f"| {count_params(m) / 1e6:.3f}M | {count_macs(m, args.size) / 1e9:.2f} | {w.name if w else 'none yet'} |"
        )
    print("MACs = torch.utils.flop_counter FLOPs / 2")
    from .models.checkpoint import _read_safetensors, load_model, weights_sha256

    for name, path in shipped.items():
        it = _read_safetensors(path)[1].get("iteration", "?")
        print(f"{path.name}: iteration {it}, weights sha256 {weights_sha256(load_model(name))}")
    return 0


def _degrade(args) -> int:
    import numpy as np

    from .degradations import degrade, parse_spec
    from .errors import AnyIRError
    from .runtime.io import read_rgb8, write_image

    try:
        names = parse_spec(args.spec)
    except ValueError as e:
        raise AnyIRError(str(e)) from None
    rgb = read_rgb8(args.input).astype(np.float32) / 255.0
    out = degrade(rgb, names, rng=args.seed)
    write_image(args.output, np.rint(out[..., ::-1] * 255).astype(np.uint8))
    print(f"wrote {args.output} ({'+'.join(names)}, seed {args.seed})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m anyir_edge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="model configurations, cost and shipped weights")
    p.add_argument("--size", type=int, default=224, help="square input size for the MAC count (default 224)")
    p = sub.add_parser("degrade", help="write a degraded copy of an image")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--spec", default="noise", help="noise, rain, haze, lowlight, blur, jpeg or a mix like haze+rain")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "info" and args.size < 1:
        parser.error("--size must be >= 1")
    return {"info": _info, "degrade": _degrade}[args.command](args)


if __name__ == "__main__":
    from .cli import run

    sys.exit(run("python -m anyir_edge", main))
