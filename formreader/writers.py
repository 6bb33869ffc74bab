"""Write records as CSV, JSON or JSONL, atomically (a crash never leaves a half-written file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from formreader.errors import ConfigError
from formreader.records import PageRecord

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: output must end in .csv, .json or .jsonl")
    return fmt


def rows(records: Iterable[PageRecord], field_names: list[str], detail: bool = False) -> list[dict[str, object]]:
    return [r.row(field_names, detail) for r in records]


def render(records: Iterable[PageRecord], field_names: list[str], fmt: str) -> str:
    # JSON rows also carry each field's raw reading and alternatives; CSV keeps its columns.
    table = rows(records, field_names, detail=fmt != "csv")
    if fmt == "csv":
        columns = list(PageRecord(file="", page=0).row(field_names))
        return pd.DataFrame(table, columns=columns).to_csv(index=False)
    if fmt == "json":
        return json.dumps(table, ensure_ascii=False, indent=1) + "\n"
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_records(path: Path, records: Iterable[PageRecord], field_names: list[str]) -> None:
    atomic_write_text(path, render(records, field_names, output_format(path)))
