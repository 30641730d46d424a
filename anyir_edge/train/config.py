"""Training configuration: a YAML file plus ``key=value`` overrides.

Defaults follow the PromptIR protocol used by AnyIR: 128x128 random crops with flips and
rotations, L1 loss, AdamW at 2e-4, linear warm-up then cosine decay, batch 8 per GPU.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import AnyIRError


class ConfigError(AnyIRError):
    pass


@dataclass
class TaskSpec:
    """One training task.

    Either ``clean`` folders degraded on the fly with ``degrade`` (a spec such as ``noise`` or
    ``haze+rain``, see :mod:`anyir_edge.degradations`; ``params`` fixes degradation
    parameters; ``none`` (``IDENTITY``) keeps the clean image as the input, which teaches the
    model to leave an undegraded photo alone), or ``paired`` folders each holding ``lq/`` and
    ``gt/`` with equal file names.
    ``weight`` is the task's sampling weight; ``teacher_weight`` (with a config ``teacher``) this
    task's weight of the distillation term instead of the config's ``teacher_weight``: 0 for a task
    whose targets the teacher does not reach (its samples then skip the teacher's forward).
    """

    name: str
    weight: float = 1.0
    clean: list[str] = field(default_factory=list)
    degrade: str | None = None
    params: dict = field(default_factory=dict)
    paired: list[str] = field(default_factory=list)
    teacher_weight: float | None = None


IDENTITY = "none"
_TASK_FIELDS = frozenset(f.name for f in dataclasses.fields(TaskSpec))


@dataclass
class TrainConfig:
    model: str = "anyir"
    model_overrides: dict = field(default_factory=dict)
    data_root: str = "${ANYIR_DATA:../shared/data}"
    tasks: list[TaskSpec] = field(default_factory=list)
    val_tasks: list[TaskSpec] = field(default_factory=list)
    val_crop: int = 256
    val_images: int = 4
    crop: int = 128
    batch_size: int = 8  # global batch (split across DDP ranks)
    iterations: int = 300_000
    # first iteration of this config's schedule: a later phase (e.g. fine-tuning on larger
    # crops) started with --init-from a warm start of an earlier run runs its own warm-up and
    # cosine from here to ``iterations``; 0 for a run from scratch
    start_iteration: int = 0
    lr: float = 2e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 15_000
    grad_clip: float = 0.0
    fft_loss_weight: float = 0.0
    # distillation: a trained model (shipped name or checkpoint, any architecture) whose output
    # on the same degraded input is a second L1 target with this weight (0: no teacher)
    teacher: str = ""
    teacher_weight: float = 0.0
    ema_decay: float = 0.999
    amp: bool = True  # CUDA only
    seed: int = 0  # training samples (task, image, crop, degradation) per sample index
    val_seed: int = 0  # validation degradations: kept apart from seed so phases share one validation set
    threads: int = 0  # torch intra-op threads on CPU; 0 = leave torch's default
    workers: int = 0
    log_every: int = 20
    val_every: int = 1000
    ckpt_every: int = 200
    out: str = "runs/anyir"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _expand(value: str) -> str:
    """``${VAR:default}`` -> environment value or default."""
    if value.startswith("${") and value.endswith("}"):
        var, _, default = value[2:-1].partition(":")
        return os.environ.get(var, default)
    return value


def resolve_path(cfg: TrainConfig, folder: str) -> Path:
    p = Path(folder)
    return p if p.is_absolute() else Path(_expand(cfg.data_root)) / p


def _coerce(name: str, value, default):
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return bool(value)
    if isinstance(default, int) and not isinstance(default, bool):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(default, tuple):
        return tuple(value)
    return value


def _tasks(items, where: str) -> list[TaskSpec]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of tasks")
    out = []
    for i, t in enumerate(items):
        if not isinstance(t, dict) or "name" not in t:
            raise ConfigError(f"{where}[{i}]: a task needs at least a name")
        bad = set(t) - _TASK_FIELDS
        if bad:
            raise ConfigError(f"{where}[{i}] ({t['name']}): unknown field(s) {', '.join(sorted(bad))}")
        spec = TaskSpec(**t)
        if bool(spec.clean) == bool(spec.paired):
            raise ConfigError(f"{where}[{i}] ({spec.name}): give either clean folders (+ degrade) or paired folders")
        if spec.clean and not spec.degrade:
            raise ConfigError(f"{where}[{i}] ({spec.name}): clean folders need a degrade spec")
        if spec.degrade == IDENTITY and spec.params:
            raise ConfigError(f"{where}[{i}] ({spec.name}): degrade 'none' takes no params")
        if spec.weight <= 0:
            raise ConfigError(f"{where}[{i}] ({spec.name}): weight must be > 0")
        if spec.teacher_weight is not None and not spec.teacher_weight >= 0:
            raise ConfigError(f"{where}[{i}] ({spec.name}): teacher_weight must be >= 0")
        out.append(spec)
    return out


def _override_tasks(tasks, overrides, where: str) -> list:
    """``tasks`` (a list of task mappings, as read) with ``overrides`` applied: a mapping from a
    task's name to the fields that replace that task's (``{rain: {weight: 5}}``), so a later phase
    restates only what it changes. Order is kept; a name that is not a task, or a field that is
    not a task field, is an error. ``name`` cannot be overridden."""
    if not overrides:
        return tasks
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: expected a mapping from task name to the fields to change")
    if not isinstance(tasks, list):
        raise ConfigError(f"{where}: there are no tasks to override (tasks: [...] in this file or its base)")
    names = [t.get("name") for t in tasks if isinstance(t, dict)]
    known = _TASK_FIELDS - {"name"}
    for name, fields in overrides.items():
        if name not in names:
            near = difflib.get_close_matches(str(name), [str(n) for n in names], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (tasks: {', '.join(map(str, names))})"
            raise ConfigError(f"{where}: no task named {name!r}{hint}")
        if not isinstance(fields, dict) or not fields:
            raise ConfigError(f"{where} ({name}): expected a mapping of the fields to change, e.g. {{weight: 2}}")
        bad = set(fields) - known
        if bad:
            raise ConfigError(f"{where} ({name}): unknown or fixed field(s) {', '.join(sorted(map(str, bad)))}")
    return [{**t, **overrides[t["name"]]} if isinstance(t, dict) and t.get("name") in overrides else t
            for t in tasks]


def _read_yaml(p: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file as a mapping; ``base: OTHER.yaml`` (relative to this file) is read first and
    this file's keys replace its keys (a later training phase names the run it continues).
    ``task_overrides`` changes fields of the tasks (this file's or, without ``tasks``, its base's)
    by name; it applies at this file's level and is not passed on."""
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    base = raw.pop("base", None)
    task_overrides = raw.pop("task_overrides", None)
    if base is not None:
        bp = (p.parent / str(base)).resolve()
        if bp in seen or bp == p.resolve():
            raise ConfigError(f"{p}: base {base} includes itself")
        raw = {**_read_yaml(bp, seen + (p.resolve(),)), **raw}
    if task_overrides is not None:
        raw["tasks"] = _override_tasks(raw.get("tasks"), task_overrides, f"{p}: task_overrides")
    return raw


def build_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read ``path`` (YAML) and apply ``key=value`` overrides (values parsed as YAML)."""
    raw: dict = {} if path is None else _read_yaml(Path(path))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, parsed = key.strip(), yaml.safe_load(value)
        if key == "task_overrides":  # on the command line too: task_overrides={rain: {weight: 5}}
            raw["tasks"] = _override_tasks(raw.get("tasks"), parsed, f"override {item!r}")
        else:
            raw[key] = parsed
    defaults = TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {}
    for k, v in raw.items():
        if k not in fields:
            near = difflib.get_close_matches(k, fields, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"unknown config key {k!r}{hint}")
        if k in ("tasks", "val_tasks"):
            kw[k] = _tasks(v, k)
        elif k == "model_overrides":
            kw[k] = dict(v or {})
        else:
            kw[k] = _coerce(k, v, getattr(defaults, k))
    cfg = TrainConfig(**kw)
    if not cfg.tasks:
        raise ConfigError("no training tasks configured (tasks: [...])")
    for name in ("crop", "batch_size", "iterations"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1")
    if cfg.teacher_weight < 0 or bool(cfg.teacher) != (cfg.teacher_weight > 0):
        raise ConfigError("teacher and teacher_weight > 0 go together (distillation from a trained model)")
    per_task = [t.name for t in cfg.tasks if t.teacher_weight is not None]
    if per_task and not cfg.teacher:
        raise ConfigError(f"task(s) {', '.join(per_task)} set teacher_weight but the config has no teacher")
    if any(t.teacher_weight is not None for t in cfg.val_tasks):
        raise ConfigError("validation tasks take no teacher_weight (validation scores the EMA model alone)")
    if not 0 <= cfg.start_iteration < cfg.iterations:
        raise ConfigError(f"start_iteration {cfg.start_iteration} must be >= 0 and below iterations {cfg.iterations}")
    return cfg
