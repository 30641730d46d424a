"""Training and validation data.

Every training sample is a pure function of ``(seed, global sample index)``: the task, the
image, the crop, the augmentation and the degradation are all drawn from
``numpy.random.default_rng([seed, index])``.  Resuming at iteration ``i`` therefore continues
with exactly the batches an uninterrupted run would have seen, whatever the number of data
workers or DDP ranks (rank ``r`` of ``R`` takes slice ``r`` of each global batch).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .. import degradations as D
from ..runtime import io
from ..runtime.io import IMAGE_SUFFIXES
from .config import IDENTITY, ConfigError, TaskSpec, TrainConfig, resolve_path



def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"{folder}: no images found")
    return files


# decoded once per process: clean images are re-cropped many times (do not modify them)
read_rgb8 = functools.lru_cache(maxsize=None)(io.read_rgb8)


@dataclass
class _Task:
    spec: TaskSpec
    pairs: list[tuple[np.ndarray | None, np.ndarray, str]]  # (lq or None, gt, file name)


def _load_task(cfg: TrainConfig, spec: TaskSpec) -> _Task:
    pairs = []
    if spec.clean:
        if spec.degrade != IDENTITY:
            D.parse_spec(spec.degrade)  # validates the names early
        for folder in spec.clean:
            for p in list_images(resolve_path(cfg, folder)):
                pairs.append((None, read_rgb8(p), p.name))
    for folder in spec.paired:
        root = resolve_path(cfg, folder)
        for gt_path in list_images(root / "gt"):
            lq_path = root / "lq" / gt_path.name
            if not lq_path.is_file():
                raise ConfigError(f"{lq_path}: missing degraded image for {gt_path}")
            lq, gt = read_rgb8(lq_path), read_rgb8(gt_path)
            if lq.shape != gt.shape:
                raise ConfigError(f"{lq_path}: size {lq.shape[:2]} differs from its ground truth {gt.shape[:2]}")
            pairs.append((lq, gt, gt_path.name))
    return _Task(spec, pairs)


def _crop(rng: np.random.Generator, size: int, *imgs: np.ndarray) -> list[np.ndarray]:
    h, w = imgs[0].shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        imgs = tuple(np.pad(im, ((0, ph), (0, pw), (0, 0)), mode="reflect") for im in imgs)
        h, w = imgs[0].shape[:2]
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return [im[y:y + size, x:x + size] for im in imgs]


def _augment(mode: int, img: np.ndarray) -> np.ndarray:
    """One of the 8 flips/rotations of the dihedral group."""
    if mode & 4:
        img = img[:, ::-1]
    return np.ascontiguousarray(np.rot90(img, mode & 3))


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _degraded_pair(task: _Task, item, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lq, gt, _ = item
    gt = gt.astype(np.float32) / 255.0
    if lq is None and task.spec.degrade == IDENTITY:
        lq = gt.copy()
    elif lq is None:
        lq = D.degrade(gt, task.spec.degrade, rng=rng, params=task.spec.params or None)
    else:
        lq = lq.astype(np.float32) / 255.0
    return lq, gt


class TrainDataset(Dataset):
    """Infinite (index-addressed) mixture of the configured tasks."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.tasks = [_load_task(cfg, t) for t in cfg.tasks]
        w = np.array([t.spec.weight for t in self.tasks], dtype=np.float64)
        self.probs = w / w.sum()

    def __len__(self) -> int:
        return 2**62

    def teacher_weight(self, task: _Task) -> float:
        """The weight of the teacher's L1 term for ``task``'s samples (0 without a teacher)."""
        if not self.cfg.teacher:
            return 0.0
        w = task.spec.teacher_weight
        return float(self.cfg.teacher_weight if w is None else w)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(degraded, clean, the sample's teacher weight: :meth:`teacher_weight`)."""
        rng = np.random.default_rng([self.cfg.seed, int(index)])
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.probs))]
        lq, gt, name = task.pairs[int(rng.integers(len(task.pairs)))]
        mode = int(rng.integers(8))
        crops = _crop(rng, self.cfg.crop, gt) if lq is None else _crop(rng, self.cfg.crop, lq, gt)
        item = (None, crops[0], name) if lq is None else (crops[0], crops[1], name)
        lq_f, gt_f = _degraded_pair(task, item, rng)
        return (_to_tensor(_augment(mode, lq_f)), _to_tensor(_augment(mode, gt_f)),
                torch.tensor(self.teacher_weight(task), dtype=torch.float32))


class IterationSampler(Sampler):
    """Sample indices for iterations ``start..total``: rank ``r`` gets its slice of each global batch."""

    def __init__(self, start: int, total: int, global_batch: int, rank: int = 0, world: int = 1):
        if global_batch % world:
            raise ConfigError(f"batch_size {global_batch} is not divisible by {world} processes")
        self.start, self.total, self.global_batch = start, total, global_batch
        self.local = global_batch // world
        self.rank = rank

    def __iter__(self):
        for it in range(self.start, self.total):
            base = it * self.global_batch + self.rank * self.local
            yield from range(base, base + self.local)

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.local


def validation_set(cfg: TrainConfig) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Fixed validation pairs: the first ``val_images`` of each val task, centre-cropped, seeded."""
    out = []
    for spec in cfg.val_tasks:
        task = _load_task(cfg, spec)
        for item in task.pairs[: cfg.val_images]:
            lq, gt, name = item
            h, w = gt.shape[:2]
            s = min(cfg.val_crop, h, w)
            y, x = (h - s) // 2, (w - s) // 2
            item = (None if lq is None else lq[y:y + s, x:x + s], gt[y:y + s, x:x + s], name)
            rng = np.random.default_rng(D.noise_seed_for(name, cfg.val_seed))
            lq_f, gt_f = _degraded_pair(task, item, rng)
            out.append((spec.name, _to_tensor(lq_f)[None], _to_tensor(gt_f)[None]))
    return out
