"""Console entry points are installed, --help works, errors become one line."""
import shutil
import subprocess

import pytest

from anyir_edge.cli import run
from anyir_edge.errors import CheckpointError

COMMANDS = ["anyir-export", "anyir-bench", "anyir-restore", "anyir-train", "anyir-eval"]


@pytest.mark.parametrize("prog", COMMANDS)
def test_entry_point_installed(prog):
    assert shutil.which(prog), f"{prog} not on PATH: is the package installed (pip install -e .)?"


@pytest.mark.parametrize("prog", COMMANDS)
def test_help_works(prog):
    r = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage" in r.stdout.lower()


def test_run_turns_errors_into_one_line(capsys):
    def boom(argv):
        raise CheckpointError("x.pth: not a checkpoint")

    assert run("anyir-x", boom) == 1
    assert capsys.readouterr().err == "anyir-x: error: x.pth: not a checkpoint\n"


def test_run_prints_warnings_as_one_line_and_restores_the_hook(capsys):
    import warnings

    from anyir_edge.runtime import EngineWarning

    def careful(argv):
        warnings.warn("engine.onnx: may be wrong here", EngineWarning)
        return 0

    hook = warnings.showwarning
    assert run("anyir-x", careful) == 0
    assert capsys.readouterr().err == "anyir-x: warning: engine.onnx: may be wrong here\n"
    assert warnings.showwarning is hook


def test_train_warm_start_flags_exclude_resume_and_exports(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tasks: [{name: a, clean: [x], degrade: noise}]\n")
    for extra in (["--resume"], ["--export-ema", "e.safetensors"]):
        r = subprocess.run(["anyir-train", "--config", str(cfg), "--init-from", "w.safetensors", *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "exclude each other" in r.stderr, r.stderr
    r = subprocess.run(["anyir-train", "--config", str(cfg), "--init-from", str(tmp_path / "missing.safetensors"),
                        "--set", f"out={tmp_path / 'o'}", "--set", "model=anyir-tiny"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.strip().endswith("no such warm-start file"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
