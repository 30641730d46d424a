"""``anyir-train``: all-in-one training from a YAML config plus overrides."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..train.config import build_config
from . import ArgumentParser, positive_int

EPILOG = """examples:
  anyir-train --config anyir_edge/configs/anyir-tiny-cpu.yaml
  anyir-train --config anyir_edge/configs/anyir-full-gpu.yaml --set batch_size=16 --set out=runs/full
  anyir-train --config ... --resume              # continue runs/<out>/last.pt exactly
  anyir-train --config ... --export-warm-start W.safetensors   # model + EMA at this iteration (half of last.pt)
  anyir-train --config ... --init-from W.safetensors          # continue from it (fresh AdamW moments)
  anyir-train --config anyir_edge/configs/anyir-tiny-cpu-ft160.yaml --init-from W.safetensors
                                  # a later phase: 'base: FILE.yaml' plus its own keys, and a schedule
                                  # (warm-up, cosine) that starts at its start_iteration
  torchrun --nproc_per_node 4 -m anyir_edge.cli.train --config ...   # multi-GPU (DDP)
Any config key can be overridden with --set KEY=VALUE (values parsed as YAML)."""


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="anyir-train", description="Train an AnyIR model (PromptIR protocol defaults).",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML training config (see anyir_edge/configs/)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (repeatable)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    ap.add_argument("--init-from", metavar="FILE", help="start from a warm-start file (model + EMA weights and "
                    "the iteration, from --export-warm-start): schedule and data order continue, AdamW restarts")
    ap.add_argument("--max-iterations", type=positive_int, help="stop after this many more iterations (checkpointed)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    ap.add_argument("--export-ema", metavar="FILE", help="do not train: write the EMA weights of <out>/last.pt to "
                    "FILE (fp16 safetensors, e.g. anyir_edge/weights/anyir-tiny.safetensors)")
    ap.add_argument("--export-warm-start", metavar="FILE", help="do not train: write the model and EMA weights "
                    "of <out>/last.pt with its iteration to FILE (fp32 safetensors, for --init-from)")
    args = ap.parse_args(argv)
    exports = [a for a in ("export_ema", "export_warm_start") if getattr(args, a)]
    if len(exports) > 1 or (args.init_from and (args.resume or exports)):
        ap.error("--init-from, --resume/--export-* and the two --export-* options exclude each other "
                 "(exports read <out>/last.pt)")
    if args.config is None and not args.overrides:
        ap.error("give --config FILE (and/or --set KEY=VALUE overrides)")
    cfg = build_config(args.config, args.overrides)
    from ..train.trainer import Trainer

    trainer = Trainer(cfg, resume=args.resume or bool(exports), progress=not args.no_progress,
                      init_from=args.init_from)
    if args.export_ema:
        path = trainer.export_ema(Path(args.export_ema))
        print(f"anyir-train: wrote EMA weights of iteration {trainer.iteration} to {path}")
        return 0
    if args.export_warm_start:
        path = trainer.save_warm_start(Path(args.export_warm_start))
        print(f"anyir-train: wrote model and EMA weights of iteration {trainer.iteration} to {path} "
              f"(continue with --init-from {path})")
        return 0
    stats = trainer.fit(args.max_iterations)
    if trainer.is_main:
        print(f"anyir-train: stopped at iteration {trainer.iteration}; state in {trainer.ckpt_path}, "
              f"EMA weights in {trainer.out / 'ema.safetensors'}; last stats: "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    import sys

    from . import run

    sys.exit(run("anyir-train", main))
