"""Training: config validation, loss goes down, bit-exact resume, DDP (gloo) == single process."""
import dataclasses
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from anyir_edge.errors import AnyIRError
from anyir_edge.train.config import ConfigError, build_config
from anyir_edge.train.data import IterationSampler, TrainDataset
from anyir_edge.train.trainer import Trainer, lr_at

MICRO = {"dim": 8, "blocks": [1, 1, 1, 1], "refine_blocks": 1}
MICRO_PAPER = {"dim": 8, "enc_blocks": [1, 1, 1, 1], "dec_blocks": [1, 1, 1], "refine_blocks": 1}


@pytest.fixture
def data_root(tmp_path):
    """A tiny clean folder and a paired folder made from smooth random images."""
    rng = np.random.default_rng(0)
    clean = tmp_path / "data" / "clean"
    clean.mkdir(parents=True)
    for i in range(3):
        img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (40, 36), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(clean / f"{i}.png"), img)
    for sub in ("lq", "gt"):
        (tmp_path / "data" / "pairs" / sub).mkdir(parents=True)
    for i in range(2):
        gt = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (32, 32), interpolation=cv2.INTER_CUBIC)
        lq = np.clip(gt.astype(int) + 40, 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "data" / "pairs" / "gt" / f"p{i}.png"), gt)
        cv2.imwrite(str(tmp_path / "data" / "pairs" / "lq" / f"p{i}.png"), lq)
    return tmp_path / "data"


def _cfg(data_root, out, model="anyir-tiny", **kw):
    return build_config(*_cfg_args(data_root, out, model, **kw))


def _cfg_args(data_root, out, model="anyir-tiny", **kw):
    """The test config as (YAML file, KEY=VALUE overrides), as the CLI takes them."""
    cfg_yaml = out.parent / f"{out.name}.yaml"
    cfg_yaml.write_text(
        f"model: {model}\n"
        f"model_overrides: {MICRO_PAPER if model.startswith('anyir-paper') else MICRO}\n"
        f"data_root: {data_root}\n"
        "tasks:\n"
        "  - {name: noise, clean: [clean], degrade: noise, weight: 2}\n"
        "  - {name: pairs, paired: [pairs]}\n"
        "val_tasks:\n"
        "  - {name: noise25, clean: [clean], degrade: noise, params: {noise: {sigma: 25}}}\n"
    )
    base = {"crop": 24, "batch_size": 4, "iterations": 8, "warmup": 2, "lr": 1e-3, "ckpt_every": 100,
            "val_every": 4, "log_every": 2, "val_crop": 32, "val_images": 2, "out": str(out), "threads": 1}
    base.update(kw)
    return cfg_yaml, [f"{k}={v}" for k, v in base.items()]


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "nope.yaml")
    p = tmp_path / "c.yaml"
    p.write_text("tasks: [{name: a, clean: [x], degrade: noise}]\nbatch_sise: 4\n")
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        build_config(p)
    p.write_text("tasks: [{name: a, clean: [x]}]\n")
    with pytest.raises(ConfigError, match="need a degrade"):
        build_config(p)
    p.write_text("tasks: [{name: a, clean: [x], degrade: noise}]\n")
    with pytest.raises(ConfigError, match="expected an integer"):
        build_config(p, ["crop=big"])


def test_config_base_file(tmp_path):
    (tmp_path / "a.yaml").write_text("tasks: [{name: a, clean: [x], degrade: noise}]\ncrop: 96\nlr: 5.0e-4\n")
    sub = tmp_path / "phase"
    sub.mkdir()
    (sub / "b.yaml").write_text("base: ../a.yaml\ncrop: 160\n")
    cfg = build_config(sub / "b.yaml", ["lr=1e-4"])
    assert (cfg.crop, cfg.lr, [t.name for t in cfg.tasks]) == (160, 1e-4, ["a"])
    (tmp_path / "loop.yaml").write_text("base: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        build_config(tmp_path / "loop.yaml")
    (tmp_path / "c.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml: config file not found"):
        build_config(tmp_path / "c.yaml")


def test_config_task_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "tasks:\n"
        "  - {name: noise, clean: [x], degrade: noise, weight: 3}\n"
        "  - {name: rain, clean: [x], degrade: rain, weight: 1, params: {rain: {density: 0.004}}}\n"
        "  - {name: identity, clean: [x], degrade: none}\n"
        "teacher: t\nteacher_weight: 1\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntask_overrides:\n  rain: {weight: 5, teacher_weight: 0}\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\ntask_overrides: {noise: {weight: 9}}\n")
    a, b, c = (build_config(tmp_path / f) for f in ("a.yaml", "b.yaml", "c.yaml"))
    # by name, only the named fields, order and every other field kept
    assert [t.name for t in b.tasks] == [t.name for t in a.tasks]
    rain_a, rain_b = a.tasks[1], b.tasks[1]
    assert (rain_b.weight, rain_b.teacher_weight, rain_b.params) == (5, 0, rain_a.params)
    assert rain_a.teacher_weight is None and b.tasks[0] == a.tasks[0] and b.tasks[2] == a.tasks[2]
    # overrides stack through a chain of bases: c keeps b's change and adds its own
    assert [t.weight for t in c.tasks] == [9, 5, 1.0] and c.tasks[1].teacher_weight == 0
    # and from the command line
    d = build_config(tmp_path / "c.yaml", ["task_overrides={identity: {weight: 6}}"])
    assert [t.weight for t in d.tasks] == [9, 5, 6]
    # a file's own tasks replace its base's; its overrides then apply to them
    (tmp_path / "e.yaml").write_text("base: b.yaml\ntasks: [{name: z, clean: [x], degrade: noise}]\n"
                                     "task_overrides: {z: {weight: 2}}\n")
    assert [(t.name, t.weight) for t in build_config(tmp_path / "e.yaml").tasks] == [("z", 2)]
    bad = {"{nosie: {weight: 2}}": "no task named 'nosie' \\(did you mean 'noise'\\?\\)",
           "{haze: {weight: 2}}": "no task named 'haze' \\(tasks: noise, rain, identity\\)",
           "{noise: {wieght: 2}}": "unknown or fixed field\\(s\\) wieght",
           "{noise: {name: other}}": "unknown or fixed field\\(s\\) name",
           "{noise: 2}": "expected a mapping of the fields",
           "[noise]": "expected a mapping from task name"}
    for text, msg in bad.items():
        (tmp_path / "f.yaml").write_text(f"base: a.yaml\ntask_overrides: {text}\n")
        with pytest.raises(ConfigError, match=msg):
            build_config(tmp_path / "f.yaml")
    # validation after the merge still applies (weight must be > 0)
    with pytest.raises(ConfigError, match="weight must be > 0"):
        build_config(tmp_path / "a.yaml", ["task_overrides={rain: {weight: 0}}"])
    (tmp_path / "g.yaml").write_text("task_overrides: {noise: {weight: 2}}\n")
    with pytest.raises(ConfigError, match="no tasks to override"):
        build_config(tmp_path / "g.yaml")


def test_phase_configs_differ_from_their_base_as_documented():
    """The scratch-rain phases state only what they change (task_overrides on their base)."""
    root = os.path.join(os.path.dirname(__file__), "..", "anyir_edge", "configs")

    def mix(name):
        cfg = build_config(os.path.join(root, f"anyir-tiny-cpu-scratch-rain-{name}.yaml"))
        return cfg, {t.name: (t.weight, t.teacher_weight) for t in cfg.tasks}

    ft, m_ft = mix("ft160")
    p7, m7 = mix("p7")
    assert list(m7) == list(m_ft)  # the same nine tasks in the same order
    assert m7["rain"] == (5, 0) and m7["rain_heavy"] == (3, 0) and m7["noise"] == (10, 0) and m7["haze"] == (4, None)
    assert m7["identity"] == m_ft["identity"] == (6, None)
    assert (p7.crop, p7.teacher, p7.val_tasks, p7.start_iteration) == (ft.crop, ft.teacher, ft.val_tasks, 27400)
    prev = ft
    for name in ("p3", "p4", "p5", "p6", "p7", "p8", "p9"):  # each phase starts where the one before it ended
        cfg, _ = mix(name)
        assert cfg.start_iteration == prev.iterations and cfg.out != prev.out and cfg.seed != prev.seed
        prev = cfg
    _, m9 = mix("p9")  # 224 px crops on phase 7's mix, after phase 8 weighed the real pairs up
    assert m9 == m7 and mix("p8")[1]["rain_real"] == (6, 0) and prev.crop == 224 > p7.crop


def test_shipped_configs_parse():
    root = os.path.join(os.path.dirname(__file__), "..", "anyir_edge", "configs")
    p1 = build_config(os.path.join(root, "anyir-paper-tiny-cpu.yaml"))
    p2 = build_config(os.path.join(root, "anyir-paper-tiny-cpu-ft160.yaml"))
    assert p1.model == p2.model == "anyir-paper-tiny"
    student = build_config(os.path.join(root, "anyir-tiny-cpu.yaml"))  # the shipped anyir-tiny, distilled
    assert (student.model, student.teacher, student.teacher_weight) == ("anyir-tiny", "anyir-paper-tiny", 1.0)
    assert student.tasks == p1.tasks and student.val_tasks == p1.val_tasks and student.start_iteration == 0
    assert p2.start_iteration == p1.iterations and p2.tasks == p1.tasks and p2.val_tasks == p1.val_tasks
    assert lr_at(p2, p2.start_iteration + p2.warmup) == pytest.approx(p2.lr)
    assert p2.lr < p1.lr and p2.crop > p1.crop
    assert p2.seed != p1.seed and p2.val_seed == p1.val_seed  # new samples, the same validation set
    s2 = build_config(os.path.join(root, "anyir-tiny-cpu-ft160.yaml"))  # the student's 160 px phase
    assert (s2.model, s2.teacher, s2.teacher_weight) == (student.model, student.teacher, student.teacher_weight)
    assert s2.start_iteration == student.iterations and s2.crop == p2.crop
    # the same tasks, rain and identity weighed up after the 12000 evaluation (see the config's comment),
    # and a synthetic-rain validation task besides phase 1's
    weights = {t.name: t.weight for t in s2.tasks}
    assert {t.name: t.degrade for t in s2.tasks} == {t.name: t.degrade for t in student.tasks}
    assert weights["rain"] > {t.name: t.weight for t in student.tasks}["rain"] and weights["identity"] == 2
    assert [t for t in s2.val_tasks if t.name != "rainsyn"] == student.val_tasks
    assert s2.seed != student.seed and s2.val_seed == student.val_seed and s2.out != student.out
    s3 = build_config(os.path.join(root, "anyir-tiny-cpu-rain.yaml"))  # phase 3: heavier rain, still distilled
    assert (s3.model, s3.teacher, s3.teacher_weight) == (s2.model, s2.teacher, s2.teacher_weight)
    assert s3.start_iteration == s2.iterations and s3.crop == s2.crop
    heavy = {t.name: t for t in s3.tasks}["rain_heavy"]
    # heavier than anything the default generator draws (density up to 0.002), see the config's comment
    assert heavy.degrade == "rain" and heavy.params["rain"]["density"] > 0.002
    assert {t.name for t in s3.tasks} == {t.name for t in s2.tasks} | {"rain_heavy"}
    assert s3.val_tasks == s2.val_tasks and s3.val_seed == s2.val_seed
    assert len({s3.seed, s2.seed, student.seed}) == 3 and s3.out not in (s2.out, student.out)
    full = build_config(os.path.join(root, "anyir-full-gpu.yaml"))  # the paper's protocol, same tasks
    assert (full.model, full.crop, full.lr, full.batch_size % 4) == ("anyir", 128, 2e-4, 0)
    assert full.tasks == p1.tasks and full.start_iteration == 0


def test_lr_schedule():
    cfg = build_config(None, ["tasks=[{name: a, clean: [x], degrade: noise}]", "iterations=100", "warmup=10",
                              "lr=1e-3", "min_lr=0"])
    assert lr_at(cfg, 0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9) == pytest.approx(1e-3)
    assert lr_at(cfg, 55) == pytest.approx(5e-4)
    assert lr_at(cfg, 100) == pytest.approx(0, abs=1e-12)
    # a later phase runs the same warm-up and cosine from its start_iteration
    phase = dataclasses.replace(cfg, start_iteration=1000, iterations=1100)
    assert [lr_at(phase, 1000 + i) for i in (0, 9, 55, 100)] == [lr_at(cfg, i) for i in (0, 9, 55, 100)]
    with pytest.raises(ConfigError, match="start_iteration 100 must be"):
        build_config(None, ["tasks=[{name: a, clean: [x], degrade: noise}]", "iterations=100", "start_iteration=100"])


def test_samples_are_a_function_of_index(data_root, tmp_path):
    cfg = _cfg(data_root, tmp_path / "r")
    a, b = TrainDataset(cfg), TrainDataset(cfg)
    for i in (0, 5, 123):
        assert all(torch.equal(u, v) for u, v in zip(a[i], b[i]))
    assert not torch.equal(a[0][1], a[1][1])
    lq, gt, teacher_w = a[0]
    assert lq.shape == gt.shape == (3, 24, 24) and lq.dtype == torch.float32 and float(teacher_w) == 0
    s = IterationSampler(2, 4, 4, rank=1, world=2)
    assert list(s) == [10, 11, 14, 15]


def test_validation_set_follows_val_seed_not_seed(data_root, tmp_path):
    from anyir_edge.train.data import validation_set

    def lq(**kw):
        return torch.cat([x for _, x, _ in validation_set(_cfg(data_root, tmp_path / "v", **kw))])

    base = lq()
    assert torch.equal(base, lq(seed=5))  # a later phase with new training samples validates alike
    assert not torch.equal(base, lq(val_seed=5))


def test_loss_decreases_and_resume_is_bit_exact(data_root, tmp_path):
    torch.set_num_threads(1)
    full = Trainer(_cfg(data_root, tmp_path / "full", iterations=12, lr=2e-3), progress=False)
    stats = full.fit()
    assert full.iteration == 12
    log = (tmp_path / "full" / "log.csv").read_text().splitlines()
    losses = [float(r.split(",")[2]) for r in log[1:]]
    assert losses[-1] < losses[0], losses
    assert "val_psnr_noise25" in stats and "val_psnr_mean" in log[0]

    part = Trainer(_cfg(data_root, tmp_path / "part", iterations=12, lr=2e-3), progress=False)
    part.fit(max_iterations=5)
    assert part.iteration == 5
    # a run killed after logging iteration 8 but before its next checkpoint: those rows go on resume
    with (tmp_path / "part" / "log.csv").open("a") as f:
        f.write("0,8,0.5,0.001,1.0" + "," * (log[0].count(",") - 4) + "\n")
    resumed = Trainer(_cfg(data_root, tmp_path / "part", iterations=12, lr=2e-3), resume=True, progress=False)
    assert resumed.iteration == 5
    resumed.fit()
    iters = [int(r.split(",")[1]) for r in (tmp_path / "part" / "log.csv").read_text().splitlines()[1:]]
    assert iters == sorted(set(iters)) and 8 in iters and iters[-1] == 12, iters
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for k, v in full.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k
    # the exported EMA weights load as a normal model
    from anyir_edge import load_model

    m = load_model(tmp_path / "part" / "ema.safetensors")
    assert m.config.dim == 8
    shipped = resumed.export_ema(tmp_path / "ship.safetensors")
    from safetensors import safe_open

    with safe_open(str(shipped), "pt") as f:
        assert f.metadata()["iteration"] == "12"
        assert f.get_tensor("patch_embed.proj.weight").dtype == torch.float16
    m2 = load_model(shipped)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (m2(x) - resumed.ema(x)).abs().max() < 1e-2



def test_warm_start_continues_schedule_with_weights(data_root, tmp_path):
    torch.set_num_threads(1)
    part = Trainer(_cfg(data_root, tmp_path / "part", iterations=10, lr=2e-3), progress=False)
    part.fit(max_iterations=4)
    warm = part.save_warm_start(tmp_path / "warm.safetensors")
    assert warm.stat().st_size < 0.6 * (tmp_path / "part" / "last.pt").stat().st_size
    w = Trainer(_cfg(data_root, tmp_path / "w", iterations=10, lr=2e-3), progress=False, init_from=warm)
    assert w.iteration == 4
    for a, b in ((part.model, w.model), (part.ema, w.ema)):
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    assert not w.opt.state  # fresh AdamW moments
    w.fit()
    assert w.iteration == 10
    rows = (tmp_path / "w" / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows][0] == 6  # first logged iteration follows on from 4


def test_warm_start_refuses_wrong_files(data_root, tmp_path):
    part = Trainer(_cfg(data_root, tmp_path / "part", iterations=4), progress=False)
    part.fit(max_iterations=1)
    with pytest.raises(AnyIRError, match="not a warm-start file"):
        Trainer(_cfg(data_root, tmp_path / "a"), progress=False, init_from=tmp_path / "part" / "ema.safetensors")
    warm = part.save_warm_start(tmp_path / "warm.safetensors")
    cfg = _cfg(data_root, tmp_path / "b")
    cfg.model_overrides = dict(cfg.model_overrides, dim=16)
    with pytest.raises(AnyIRError, match="written for model anyir-tiny"):
        Trainer(cfg, progress=False, init_from=warm)
    with pytest.raises(AnyIRError, match="no such warm-start file"):
        Trainer(_cfg(data_root, tmp_path / "c"), progress=False, init_from=tmp_path / "missing.safetensors")
    with pytest.raises(AnyIRError, match="either resume or init_from"):
        Trainer(_cfg(data_root, tmp_path / "part"), resume=True, progress=False, init_from=warm)
    # a phase that starts after the warm start's iteration, or without any earlier state
    with pytest.raises(AnyIRError, match="written at iteration 1, before this config's start_iteration 6"):
        Trainer(_cfg(data_root, tmp_path / "d", iterations=10, start_iteration=6), progress=False, init_from=warm)
    with pytest.raises(AnyIRError, match="starts at iteration 6: start it from a warm start"):
        Trainer(_cfg(data_root, tmp_path / "e", iterations=10, start_iteration=6), progress=False)


def test_identity_task_gives_clean_input(data_root, tmp_path):
    cfg = _cfg(data_root, tmp_path / "r")
    cfg_id = build_config(None, [f"data_root={data_root}", "crop=24",
                                 "tasks=[{name: clean, clean: [clean], degrade: none}]"])
    for i in range(3):
        lq, gt, _ = TrainDataset(cfg_id)[i]
        assert torch.equal(lq, gt)
    assert any(not torch.equal(*TrainDataset(cfg)[i][:2]) for i in range(3))
    with pytest.raises(ConfigError, match="takes no params"):
        build_config(None, ["tasks=[{name: c, clean: [x], degrade: none, params: {noise: {sigma: 5}}}]"])


def test_log_keeps_old_rows_when_validation_tasks_change(data_root, tmp_path):
    torch.set_num_threads(1)
    t = Trainer(_cfg(data_root, tmp_path / "run", iterations=8), progress=False)
    t.fit(max_iterations=4)
    cfg = _cfg(data_root, tmp_path / "run", iterations=8)
    cfg.val_tasks = cfg.val_tasks + [type(cfg.val_tasks[0])(name="clean", clean=["clean"], degrade="none")]
    r = Trainer(cfg, resume=True, progress=False)
    r.fit()
    import csv

    with (tmp_path / "run" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert "val_psnr_clean" in rows[0] and "val_psnr_noise25" in rows[0]
    assert [int(x["iteration"]) for x in rows] == [2, 4, 6, 8]
    assert rows[1]["val_psnr_noise25"] and not rows[1]["val_psnr_clean"]  # old row kept, new column empty
    new = [float(rows[3][k]) for k in ("val_psnr_noise25", "val_psnr_clean")]
    assert float(rows[3]["val_psnr_mean"]) == pytest.approx(sum(new) / 2)  # the mean covers the new task


def test_resume_without_checkpoint_is_an_error(data_root, tmp_path):
    with pytest.raises(AnyIRError, match="nothing to resume"):
        Trainer(_cfg(data_root, tmp_path / "empty"), resume=True, progress=False)


def test_cli_help_and_bad_config(tmp_path):
    r = subprocess.run(["anyir-train", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "config file not found" in r.stderr


DDP_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from tests.test_train import _cfg
from pathlib import Path
from anyir_edge.train.trainer import Trainer
from anyir_edge.train.data import IterationSampler, TrainDataset
from torch.utils.data import DataLoader
torch.set_num_threads(1)
t = Trainer(_cfg(Path({data!r}), Path({out!r}), model="anyir-paper-tiny", iterations=1), progress=False)
cfg = t.cfg
s = IterationSampler(0, 1, cfg.batch_size, t.rank, t.world)
lq, gt, _ = next(iter(DataLoader(TrainDataset(cfg), batch_size=s.local, sampler=s)))
loss = torch.nn.functional.l1_loss(t.net(lq), gt)
loss.backward()
if t.rank == 0:
    torch.save({{k: p.grad for k, p in t.model.named_parameters()}}, {grads!r})
if dist.is_initialized(): dist.destroy_process_group()
"""


def _torchrun(script, world: int, root: str) -> subprocess.CompletedProcess:
    from anyir_edge.train.launch import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={world}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(script)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)


def test_ddp_gloo_matches_single_process(data_root, tmp_path):
    """DDP's gradients equal one process's on the global batch (the paper layout: it has no
    BatchNorm; the authors' layout's BatchNorm becomes SyncBatchNorm on CUDA, which torch does
    not run on CPU, so on CPU each rank normalises with its own half of the batch)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    grads = {}
    for world in (1, 2):
        script = tmp_path / f"ddp{world}.py"
        out = tmp_path / f"ddp{world}"
        g = tmp_path / f"grads{world}.pt"
        script.write_text(DDP_SCRIPT.format(root=root, data=str(data_root), out=str(out), grads=str(g)))
        r = _torchrun(script, world, root)
        assert r.returncode == 0, r.stderr[-2000:]
        grads[world] = torch.load(g)
    for k, v in grads[1].items():
        torch.testing.assert_close(grads[2][k], v, rtol=1e-4, atol=1e-6, msg=k)


STOP_SCRIPT = r"""
import sys, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from tests.test_train import _cfg
from pathlib import Path
from anyir_edge.train.trainer import Trainer
torch.set_num_threads(1)
t = Trainer(_cfg(Path({data!r}), Path({out!r}), iterations=6), progress=False)
t._stop = t.rank == 1  # as if Ctrl-C had reached rank 1 only
t.fit()
print("rank", t.rank, "stopped at", t.iteration)
dist.destroy_process_group()
"""


def test_ddp_stop_on_one_rank_stops_every_rank(data_root, tmp_path):
    """A stop request seen by one rank ends every rank after the same iteration, with the state
    saved there (without the agreement rank 0 waits for rank 1 in the next all-reduce)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script, out = tmp_path / "stop.py", tmp_path / "stop"
    script.write_text(STOP_SCRIPT.format(root=root, data=str(data_root), out=str(out)))
    r = _torchrun(script, 2, root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(r.stdout.split("\n"))[-2:] == ["rank 0 stopped at 1", "rank 1 stopped at 1"], r.stdout
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 1


def test_cli_processes_trains_as_ranks_and_fails_in_one_line(data_root, tmp_path):
    """``anyir-train --processes 2``: two ranks train one run (one set of logs, one state), a
    batch that does not divide is refused before any rank starts, and a rank's error is one line
    once (not the launcher's traceback, not once per rank)."""
    from anyir_edge.cli.train import _without_processes

    assert _without_processes(["--config", "c", "--processes", "2", "--set", "a=1", "--processes=3"]) == \
        ["--config", "c", "--set", "a=1"]
    yaml, sets = _cfg_args(data_root, tmp_path / "run", iterations=4, threads=0)
    cli = ["anyir-train", "--config", str(yaml), *[a for s in sets for a in ("--set", s)], "--no-progress"]
    r = subprocess.run(cli + ["--processes", "3"], capture_output=True, text=True)
    assert r.returncode == 2 and "batch_size 4 does not divide into 3 processes" in r.stderr
    assert r.stderr.strip().count("\n") == 0
    r = subprocess.run(cli + ["--processes", "2", "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.count("nothing to resume") == 1, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "run" / "last.pt").exists()
    r = subprocess.run(cli + ["--processes", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("anyir-train: stopped at iteration 4") == 1, r.stdout
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iteration"] == 4
    with (tmp_path / "run" / "log.csv").open() as f:
        assert [int(row.split(",")[1]) for row in list(f)[1:]] == [2, 4]


def test_distillation_adds_the_teachers_l1(data_root, tmp_path):
    """loss = L1(pred, clean) + teacher_weight * L1(pred, teacher(degraded)); the teacher is frozen."""
    import anyir_edge
    import torch.nn.functional as F

    from conftest import perturbed

    teacher_path = tmp_path / "teacher.safetensors"
    anyir_edge.save_model(perturbed("anyir-paper-tiny", dim=8, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 1, 1),
                                    refine_blocks=1), teacher_path)
    t = Trainer(_cfg(data_root, tmp_path / "d", teacher=str(teacher_path), teacher_weight=0.5), progress=False)
    assert type(t.teacher).arch == "anyir-paper" and not any(p.requires_grad for p in t.teacher.parameters())
    lq, gt = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    model_state = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.model.train()
    pred = t.model(lq)
    with torch.no_grad():
        expected = float(F.l1_loss(pred, gt) + 0.5 * F.l1_loss(pred, t.teacher(lq)))
    t.model.load_state_dict(model_state)  # BatchNorm's running statistics moved: undo before the step
    assert t.step(lq, gt) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="teacher and teacher_weight"):
        _cfg(data_root, tmp_path / "e", teacher=str(teacher_path))


def test_a_task_can_weigh_the_teacher_differently(data_root, tmp_path):
    """A task's teacher_weight replaces the config's for its samples: the teacher term is each
    sample's L1 to the teacher times its weight, averaged over the batch, and the teacher does not
    run on samples of weight 0. Without per-task weights the term is the config's (tested above)."""
    import anyir_edge
    import torch.nn.functional as F

    from conftest import perturbed

    teacher_path = tmp_path / "teacher.safetensors"
    anyir_edge.save_model(perturbed("anyir-paper-tiny", dim=8, enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 1, 1),
                                    refine_blocks=1), teacher_path)
    cfg = _cfg(data_root, tmp_path / "d", teacher=str(teacher_path), teacher_weight=0.5)
    cfg.tasks[1].teacher_weight = 0.0  # the paired task: its targets are the teacher's blind spot
    ds = TrainDataset(cfg)
    weights = {ds.tasks[int(np.random.default_rng([cfg.seed, i]).choice(2, p=ds.probs))].spec.name: float(ds[i][2])
               for i in range(40)}
    assert weights == {"noise": 0.5, "pairs": 0.0}

    t = Trainer(cfg, progress=False)
    seen = []
    t.teacher.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    lq, gt = torch.rand(3, 3, 24, 24), torch.rand(3, 3, 24, 24)
    w = torch.tensor([0.5, 0.0, 2.0])
    model_state = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.model.train()
    pred = t.model(lq)
    with torch.no_grad():
        per = (pred - t.teacher(lq)).abs().mean(dim=(1, 2, 3))
        expected = float(F.l1_loss(pred, gt) + (w * per).sum() / 3)
    t.model.load_state_dict(model_state)
    seen.clear()
    assert t.step(lq, gt, w) == pytest.approx(expected, rel=1e-5)
    assert seen == [2]  # the teacher ran on the two samples that use it
    t.model.load_state_dict(model_state)
    seen.clear()
    t.model.train()
    with torch.no_grad():
        plain = float(F.l1_loss(t.model(lq), gt))
    t.model.load_state_dict(model_state)
    assert t.step(lq, gt, torch.zeros(3)) == pytest.approx(plain, rel=1e-5) and seen == []

    with pytest.raises(ConfigError, match="teacher_weight must be >= 0"):
        build_config(None, ["tasks=[{name: c, clean: [x], degrade: noise, teacher_weight: -1}]"])
    with pytest.raises(ConfigError, match="set teacher_weight but the config has no teacher"):
        build_config(None, ["tasks=[{name: c, clean: [x], degrade: noise, teacher_weight: 1}]"])
