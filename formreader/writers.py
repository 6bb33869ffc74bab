"""Write records as CSV, JSON, JSONL or Parquet, atomically (a crash never leaves a half-written file)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from formreader.errors import ConfigError
from formreader.records import PageRecord

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: output must end in .csv, .json, .jsonl or .parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401  (pandas writes Parquet through it)
        except ImportError:
            raise ConfigError(f"{path}: Parquet output needs pyarrow: pip install 'formreader[ray]'") from None
    return fmt


def rows(records: Iterable[PageRecord], field_names: list[str]) -> list[dict[str, object]]:
    return [r.row(field_names) for r in records]


def frame(records: Iterable[PageRecord], field_names: list[str]) -> pd.DataFrame:
    columns = list(PageRecord(file="", page=0).row(field_names))
    return pd.DataFrame(rows(records, field_names), columns=columns)


def render(records: Iterable[PageRecord], field_names: list[str], fmt: str) -> str:
    if fmt == "csv":
        return frame(records, field_names).to_csv(index=False)
    table = rows(records, field_names)
    if fmt == "json":
        return json.dumps(table, ensure_ascii=False, indent=1) + "\n"
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            write(fh)
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
    fmt = output_format(path)
    if fmt == "parquet":  # columnar and compressed: for runs of millions of rows
        table = frame(records, field_names)
        _atomic_write(path, lambda fh: table.to_parquet(fh, index=False))
    else:
        atomic_write_text(path, render(records, field_names, fmt))
