"""``python -m anyir_edge info``: the model configurations, their cost and the shipped weights."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anyir_edge", description=__doc__)
    parser.add_argument("command", choices=["info"], help="what to show")
    parser.add_argument("--size", type=int, default=224, help="square input size for the MAC count (default 224)")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be >= 1")
    from . import __version__, shipped_weights
    from .models import CONFIGS, create
    from .models.complexity import count_macs, count_params

    shipped = shipped_weights()
    print(f"anyir-edge {__version__}")
    print(f"| model | width | encoder | decoder | refine | params | GMACs @{args.size} | shipped weights |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cfg in CONFIGS.items():
        m = create(name)
        w = shipped.get(name)
        print(
            f"| {name} | {cfg.dim} | {list(cfg.enc_blocks)} | {list(cfg.dec_blocks)} | {cfg.refine_blocks} "
            f"| {count_params(m) / 1e6:.3f}M | {count_macs(m, args.size) / 1e9:.2f} | {w.name if w else 'none yet'} |"
        )
    print("MACs = torch.utils.flop_counter FLOPs / 2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
