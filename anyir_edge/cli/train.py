"""``anyir-train``: all-in-one training from a YAML config plus overrides."""
from __future__ import annotations

import argparse
import os
import sys
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
                                  # (warm-up, cosine) that starts at its start_iteration;
                                  # 'task_overrides: {rain: {weight: 5}}' changes its base's tasks by name
  anyir-train --config ... --processes 2         # two DDP ranks on this machine: on a 2-core CPU
                                                 # 1.8x one process (one thread each)
  torchrun --nproc_per_node 4 -m anyir_edge.cli.train --config ...   # multi-GPU (DDP), or several machines
Any config key can be overridden with --set KEY=VALUE (values parsed as YAML), and tasks by name:
  --set 'task_overrides={rain: {weight: 5, teacher_weight: 0}}'"""


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="anyir-train", description="Train an AnyIR model (PromptIR protocol defaults).",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                        allow_abbrev=False)  # each rank's command line drops --processes by its full name
    ap.add_argument("--config", help="YAML training config (see anyir_edge/configs/)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (repeatable)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    ap.add_argument("--init-from", metavar="FILE", help="start from a warm-start file (model + EMA weights and "
                    "the iteration, from --export-warm-start): schedule and data order continue, AdamW restarts")
    ap.add_argument("--max-iterations", type=positive_int, help="stop after this many more iterations (checkpointed)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    ap.add_argument("--processes", type=positive_int, default=1, metavar="N",
                    help="train as N DDP ranks on this machine (gloo on CPU, one GPU each with CUDA); the "
                    "global batch is split between them, so batch_size must divide by N. On CPU each rank "
                    "gets cores/N threads (not the config's) unless --set threads=T. Not bit-identical to one process "
                    "(BatchNorm statistics per rank); --resume works across process counts")
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
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:
        if exports:
            ap.error("--processes trains; --export-* only reads <out>/last.pt (leave --processes out)")
        if cfg.batch_size % args.processes:
            ap.error(f"batch_size {cfg.batch_size} does not divide into {args.processes} processes "
                     "(--set batch_size=... or another --processes)")
        import torch

        if torch.cuda.is_available() and args.processes > torch.cuda.device_count():
            ap.error(f"--processes {args.processes} but {torch.cuda.device_count()} GPU(s): one rank per GPU")
        threads = None  # a config's threads is for one process: N ranks share the cores unless --set says
        if not torch.cuda.is_available() and not any(o.replace(" ", "").startswith("threads=") for o in args.overrides):
            threads = max(1, (os.cpu_count() or 1) // args.processes)
        from ..train.launch import launch

        return launch(_without_processes(argv if argv is not None else sys.argv[1:]), args.processes, threads)
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


def _without_processes(argv: list[str]) -> list[str]:
    """The command line for each rank: the same, less ``--processes N`` (``--processes=N``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


if __name__ == "__main__":
    from . import run

    sys.exit(run("anyir-train", main))
