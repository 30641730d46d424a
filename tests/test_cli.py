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
