"""Engines: who schedules the per-file work (`prepare_file`) and the batched recognition (`finish_pages`).

- local: worker threads and one recognizer in this process (`pipeline.Scanner`).
- ray:   Ray Data on a local Ray or a cluster (`engines.ray_engine.RayScanner`); Ray is imported
         only when this engine is chosen, so the default install never needs it.

Both take the same files and yield the same records in input (file, page) order through
`scan(files, on_file)`, so `scan`'s progress, summary and writers serve both.
"""

from __future__ import annotations

from pathlib import Path

from formreader.engines.uris import is_uri, list_uri
from formreader.errors import ConfigError, InputError
from formreader.ingest import discover

ENGINES = ("local", "ray")


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r} (choose {' or '.join(ENGINES)})")
    return name


def discover_inputs(inputs: list[str | Path], engine: str) -> list[Path | str]:
    """Local files (folders searched recursively) as Paths, object-store files as URI strings, in input order."""
    found: list[Path | str] = []
    for item in inputs:
        if is_uri(item):
            if engine != "ray":
                raise InputError(f"{item}: object-store URIs are read by --engine ray (pip install 'formreader[ray]')")
            found.extend(list_uri(str(item)))
        else:
            found.extend(discover([Path(item)]))
    return found
