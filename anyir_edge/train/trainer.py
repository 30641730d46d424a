"""The training loop: resumable, EMA, AMP on CUDA, DDP through torchrun.

State lives in ``<out>/last.pt`` (model, EMA, optimizer, scheduler, AMP scaler, iteration,
RNG states), written atomically every ``ckpt_every`` iterations and when the run is stopped
(Ctrl-C / SIGTERM end the current iteration, save, and exit).  ``resume=True`` continues with
identical state; because every batch is a function of (seed, iteration), the resumed run is
bit-identical to an uninterrupted one on the same hardware.  The EMA weights are also
exported as ``<out>/ema.safetensors`` (loadable with ``anyir_edge.load_model``).
Validation PSNR goes to ``<out>/log.csv`` (one row per validation).
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..errors import AnyIRError
from ..fsutil import atomic_path
from ..models import create
from ..models.checkpoint import _read_safetensors, save_model
from .config import TrainConfig
from .data import IterationSampler, TrainDataset, validation_set

WARM_FORMAT = "anyir_edge.warm_start"
# names of the paper-reading configurations before the authors' layout took "anyir"/"anyir-tiny"
LEGACY_WARM_NAMES = {"anyir": "anyir-paper", "anyir-tiny": "anyir-paper-tiny"}


def lr_at(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr`` at ``iterations``.

    Both are counted from ``start_iteration`` (the start of this config's phase)."""
    it -= cfg.start_iteration
    if cfg.warmup and it < cfg.warmup:
        return cfg.lr * (it + 1) / cfg.warmup
    t = (it - cfg.warmup) / max(1, cfg.iterations - cfg.start_iteration - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def fft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    d = torch.fft.rfft2(pred.float()) - torch.fft.rfft2(target.float())
    return d.abs().mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _rewrite_log(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Replace the CSV log at ``path`` with ``rows`` under ``fields`` (atomically)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True, device: str | None = None,
                 init_from: str | os.PathLike | None = None):
        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world > 1
        if device is None:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if cfg.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out)
        self.is_main = self.rank == 0
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress and self.is_main

        torch.manual_seed(cfg.seed)
        self.model = create(cfg.model, **cfg.model_overrides).to(self.device)
        self.ema = create(cfg.model, **cfg.model_overrides).to(self.device).eval()
        self.ema.load_state_dict(self.model.state_dict())
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.teacher = None
        if cfg.teacher:
            from ..models.checkpoint import load_model

            self.teacher = load_model(cfg.teacher, device=self.device)  # CheckpointError: one line
            self.teacher.set_fft_mode(self.teacher.fast_fft_mode())
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.iteration = 0
        self.ckpt_path = self.out / "last.pt"
        if resume and init_from is not None:
            raise AnyIRError("give either resume or init_from, not both")
        if cfg.start_iteration and not resume and init_from is None:
            raise AnyIRError(f"this config's schedule starts at iteration {cfg.start_iteration}: start it from a "
                             "warm start of the earlier phase (--init-from) or resume it (--resume)")
        if resume:
            self._load()
        elif init_from is not None:
            self._load_warm_start(Path(init_from))
        self.net = self.model
        if self.distributed and self.device.type == "cuda":
            # the global batch's statistics, as one process would see them (SyncBatchNorm has no
            # CPU kernels: on CPU each rank normalises its share of the batch)
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.net = self.model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self._stop = False

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        return {
            "iteration": self.iteration,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])},
        }

    def save(self) -> None:
        if not self.is_main:
            return
        _atomic_torch_save(self.state(), self.ckpt_path)
        save_model(self.ema, self.out / "ema.safetensors", metadata={"iteration": self.iteration})

    def export_ema(self, path: Path, half: bool = True) -> Path:
        """Write the EMA weights as a shippable safetensors file (fp16 storage by default)."""
        return save_model(self.ema, path, half=half, metadata={"iteration": self.iteration,
                                                               "trained_with": self.cfg.out})

    def save_warm_start(self, path: Path) -> Path:
        """Model and EMA weights (fp32 safetensors) plus the iteration: a compact restart point.

        Unlike ``last.pt`` it holds no optimizer, scaler or RNG state, so a run started from it
        (``init_from``) continues the schedule and the data order at the same iteration but
        with fresh AdamW moments: close to, not bit-identical with, an uninterrupted run.  It
        is half the size of ``last.pt``, whose other half is AdamW's two moments per weight.
        """
        from safetensors.torch import save_file

        tensors = {f"{k}.{n}": v.detach().cpu().contiguous().clone()
                   for k, sd in (("model", self.model.state_dict()), ("ema", self.ema.state_dict()))
                   for n, v in sd.items()}
        meta = {WARM_FORMAT: "1", "iteration": str(self.iteration), "model": self.cfg.model,
                "arch": type(self.model).arch,
                "model_overrides": json.dumps(self.cfg.model_overrides, sort_keys=True)}
        with atomic_path(Path(path)) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    def _load_warm_start(self, path: Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise AnyIRError(f"{path}: no such warm-start file")
        tensors, meta = _read_safetensors(path)  # CheckpointError (one line) for an unreadable file
        if WARM_FORMAT not in meta:
            raise AnyIRError(f"{path}: not a warm-start file (write one with anyir-train --export-warm-start)")
        want = (self.cfg.model, json.dumps(self.cfg.model_overrides, sort_keys=True))
        written_for = meta.get("model")
        if "arch" not in meta:  # written before architectures were registered: our paper reading
            written_for = LEGACY_WARM_NAMES.get(written_for, written_for)
        if (written_for, meta.get("model_overrides")) != want:
            raise AnyIRError(f"{path}: written for model {written_for} {meta.get('model_overrides')}, "
                             f"this config trains {want[0]} {want[1]}")
        try:
            for key, module in (("model", self.model), ("ema", self.ema)):
                sd = {k[len(key) + 1:]: v for k, v in tensors.items() if k.startswith(key + ".")}
                module.load_state_dict(sd)
        except Exception as e:
            raise AnyIRError(f"{path}: cannot load it ({str(e).splitlines()[0][:160]})") from None
        it = int(meta["iteration"])
        if it < self.cfg.start_iteration:
            raise AnyIRError(f"{path}: written at iteration {it}, before this config's start_iteration "
                             f"{self.cfg.start_iteration} (finish the earlier phase first)")
        self.iteration = it

    def _load(self) -> None:
        if not self.ckpt_path.is_file():
            raise AnyIRError(f"{self.ckpt_path}: nothing to resume (no checkpoint in {self.out})")
        try:
            st = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(st["model"])
            self.ema.load_state_dict(st["ema"])
            self.opt.load_state_dict(st["optimizer"])
            self.scaler.load_state_dict(st["scaler"])
        except Exception as e:  # corrupt file or a different model config
            raise AnyIRError(f"{self.ckpt_path}: cannot resume ({str(e).splitlines()[0][:160]})") from None
        self.iteration = int(st["iteration"])
        torch.set_rng_state(st["rng"]["torch"].cpu())
        random.setstate((3, tuple(st["rng"]["python"]), None))
        self._trim_log()

    def _trim_log(self) -> None:
        """Drop log rows written after the checkpoint being resumed (a run killed between two
        checkpoints logged iterations it will now run again; without this they appear twice)."""
        path = self.out / "log.csv"
        if not self.is_main or not path.is_file():
            return
        with path.open(newline="") as f:
            r = csv.DictReader(f)
            fields, rows = r.fieldnames, list(r)
        keep = [row for row in rows if not row.get("iteration") or int(float(row["iteration"])) <= self.iteration]
        if fields and len(keep) < len(rows):
            _rewrite_log(path, fields, keep)

    # ---------------------------------------------------------------- loop
    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    @torch.no_grad()
    def validate(self, val) -> dict[str, float]:
        per: dict[str, list[float]] = {}
        for task, lq, gt in val:
            out = self.ema(lq.to(self.device))
            per.setdefault(task, []).append(psnr(out.cpu(), gt))
        res = {k: float(np.mean(v)) for k, v in per.items()}
        if res:
            res["mean"] = float(np.mean(list(res.values())))
        return res

    def log_fields(self) -> list[str]:
        val = [f"val_psnr_{t.name}" for t in self.cfg.val_tasks]
        return ["time", "iteration", "loss", "lr", "sec_per_it"] + val + (["val_psnr_mean"] if val else [])

    def _log(self, row: dict) -> None:
        path = self.out / "log.csv"
        fields = self.log_fields()
        if path.exists():
            with path.open(newline="") as f:
                old = next(csv.reader(f), [])
            if old and old != fields:
                # validation tasks changed on resume: rewrite the log once with the union of the
                # columns (old rows keep their values; a column no longer measured stays)
                fields = fields + [c for c in old if c not in fields]
                with path.open(newline="") as f:
                    rows = list(csv.DictReader(f))
                _rewrite_log(path, fields, rows)
            elif old:
                fields = old
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="")
            if new:
                w.writeheader()
            w.writerow(row)

    def _ema_update(self) -> None:
        # warm-up of the decay so early EMA weights are not dominated by the initialisation
        d = min(self.cfg.ema_decay, (1 + self.iteration) / (10 + self.iteration))
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm.detach(), 1.0 - d)
            for be, bm in zip(self.ema.buffers(), self.model.buffers()):
                be.copy_(bm)

    def step(self, lq: torch.Tensor, gt: torch.Tensor, teacher_w: torch.Tensor | None = None) -> float:
        """One optimiser step on a batch; ``teacher_w``: each sample's weight of the teacher's L1
        term (default: the config's ``teacher_weight`` for all)."""
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = lr_at(cfg, self.iteration)
        lq, gt = lq.to(self.device, non_blocking=True), gt.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            pred = self.net(lq)
            loss = F.l1_loss(pred.float(), gt)
            if self.teacher is not None:
                loss = loss + self._distillation(pred.float(), lq, teacher_w)
            if cfg.fft_loss_weight:
                loss = loss + cfg.fft_loss_weight * fft_loss(pred, gt)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self._ema_update()
        self.iteration += 1
        return loss.item()

    def _distillation(self, pred: torch.Tensor, lq: torch.Tensor, teacher_w: torch.Tensor | None) -> torch.Tensor:
        """The teacher's L1 term: ``teacher_weight * L1(pred, teacher(lq))`` when every sample has
        the config's weight; otherwise each sample's L1 weighted by its own and averaged over the
        batch, the teacher run only on samples whose weight is not 0."""
        w = teacher_w.to(pred.device).float() if teacher_w is not None else None
        if w is None or bool((w == self.cfg.teacher_weight).all()):
            with torch.no_grad():
                target = self.teacher(lq).float()
            return self.cfg.teacher_weight * F.l1_loss(pred, target)
        used = (w > 0).nonzero().flatten()
        if not len(used):
            return pred.new_zeros(())
        with torch.no_grad():
            target = self.teacher(lq[used]).float()
        per_sample = (pred[used] - target).abs().flatten(1).mean(dim=1)
        return (w[used] * per_sample).sum() / len(w)

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is on any: a Ctrl-C / SIGTERM that reaches one rank
        between two iterations then stops them all after the same one (otherwise the others wait
        for it in the next gradient all-reduce)."""
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def fit(self, max_iterations: int | None = None) -> dict:
        """Train until ``cfg.iterations`` (or ``max_iterations`` more); returns the last stats."""
        cfg = self.cfg
        end = cfg.iterations if max_iterations is None else min(cfg.iterations, self.iteration + max_iterations)
        sampler = IterationSampler(self.iteration, end, cfg.batch_size, self.rank, self.world)
        loader = DataLoader(TrainDataset(cfg), batch_size=sampler.local, sampler=sampler,
                            num_workers=cfg.workers, persistent_workers=False)
        val = validation_set(cfg) if (self.is_main and cfg.val_tasks) else []
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.iteration, unit="it", dynamic_ncols=True)
        stats: dict = {"iteration": self.iteration}
        t0, losses = time.time(), []
        try:
            for lq, gt, teacher_w in loader:
                losses.append(self.step(lq, gt, teacher_w))
                if self.distributed:
                    self._stop = self._any_rank(self._stop)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr_at(cfg, self.iteration):.2e}")
                done = self.iteration >= end
                if self.iteration % cfg.log_every == 0 or done:
                    stats = {"iteration": self.iteration, "loss": float(np.mean(losses)),
                             "lr": lr_at(cfg, self.iteration - 1), "sec_per_it": (time.time() - t0) / len(losses)}
                    if val and (self.iteration % cfg.val_every == 0 or done):
                        stats.update({f"val_psnr_{k}": v for k, v in self.validate(val).items()})
                    if self.is_main and (("val_psnr_mean" in stats) or self.iteration % cfg.log_every == 0):
                        self._log({"time": round(time.time(), 1), **stats})
                    t0, losses = time.time(), []
                if self.iteration % cfg.ckpt_every == 0 or done or self._stop:
                    self.save()
                if self._stop or done:
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if bar is not None:
                bar.close()
        return stats
