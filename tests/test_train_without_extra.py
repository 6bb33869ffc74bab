"""Runtime and training stay apart: the runtime never imports `train/`, TensorFlow or onnx, and
`python -m train` without the `train` extra says what to install instead of showing a traceback.

Each check runs in a subprocess whose import system refuses the blocked packages (a meta path
finder installed by sitecustomize) and logs every attempt to import one of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRA = ("tensorflow", "keras", "onnx", "jax")
INSTALL = 'pip install "formreader[train]"'

BLOCKER = '''
import os, sys

BLOCKED = set(os.environ["BLOCKED_MODULES"].split(","))


class Blocker:
    """As if these packages were not installed; every attempt is logged."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
'''


def _run(tmp_path: Path, blocked: tuple[str, ...], args: list[str], cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, list[str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "blocked.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", BLOCKED_MODULES=",".join(blocked), BLOCKED_LOG=str(log))
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    return done, log.read_text().split()


@pytest.mark.parametrize("command", [
    ["fit", "--config", str(ROOT / "train" / "configs" / "tiny.json"), "--out", "{out}"],
    ["export", "--run", "runs/none", "--output", "{out}"],
])
def test_training_without_the_extra_says_which_extra_to_install(command, tmp_path):
    args = [a.replace("{out}", str(tmp_path / "out")) for a in command]
    done, _ = _run(tmp_path, EXTRA, ["-m", "train", "--data-root", str(tmp_path), *args])
    assert done.returncode == 2, done.stderr
    assert f"python -m train {command[0]}: needs the training extra" in done.stderr
    assert INSTALL in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize("command", [["evaluate"], ["pseudolabel", "--output", "x.csv"], ["pack", "--output", "x"]])
def test_reading_commands_need_no_extra_and_name_the_data_root(command, tmp_path):
    missing = tmp_path / "no-shared-here"
    done, attempts = _run(tmp_path, EXTRA, ["-m", "train", "--data-root", str(missing), *command], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert attempts == []  # never reached for TensorFlow or onnx
    assert str(missing) in done.stderr and "--data-root" in done.stderr and "FORMREADER_SHARED" in done.stderr
    assert "Traceback" not in done.stderr


RUNTIME_SCRIPT = '''
import importlib, pkgutil, sys
from pathlib import Path

import formreader
from typer.testing import CliRunner

for module in pkgutil.walk_packages(formreader.__path__, "formreader."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)

from formreader.cli import app

out = Path(sys.argv[1])
runner = CliRunner()
scan = runner.invoke(app, ["scan", "samples/form_0003.png", "--out", str(out / "rows.csv"), "--crops", str(out / "crops")])
assert scan.exit_code == 0, scan.output
read = runner.invoke(app, ["read", str(out / "crops"), "--out", str(out / "crops.csv")])
assert read.exit_code == 0, read.output
print("ROWS", len((out / "rows.csv").read_text().splitlines()), "CROPS", len((out / "crops.csv").read_text().splitlines()))
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in ("train", "tensorflow", "keras", "onnx", "jax")))
'''


def test_runtime_never_imports_train_tensorflow_or_onnx(tmp_path):
    script = tmp_path / "runtime.py"
    script.write_text(RUNTIME_SCRIPT)
    done, attempts = _run(tmp_path, (*EXTRA, "train"), [str(script), str(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert attempts == []
    assert "ROWS 2 " in done.stdout  # header + the page
    assert "LOADED []" in done.stdout


def test_installed_package_needs_out_for_fit(tmp_path, monkeypatch):
    from train import extra

    assert extra.default_run_folder("tiny") == extra.REPO_ROOT / "runs" / "tiny"  # in this checkout
    monkeypatch.setattr(extra, "REPO_ROOT", tmp_path)  # site-packages: no pyproject.toml beside it
    with pytest.raises(extra.TrainUsageError, match="--out is required"):
        extra.default_run_folder("tiny")
