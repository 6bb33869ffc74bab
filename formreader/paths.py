"""Where things live outside the package: the shared data folder beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "FORMREADER_SHARED"


def shared_root(arg: str | os.PathLike | None = None) -> Path:
    """--data-root, else $FORMREADER_SHARED, else the `shared` folder beside the repository.

    Never relative to the working directory: commands run from anywhere must find the same data.
    """
    if arg:
        return Path(arg).expanduser().resolve()
    env = os.environ.get(SHARED_ENV)
    return Path(env).expanduser().resolve() if env else REPO_ROOT.parent / "shared"
