"""Inputs on object stores and shared filesystems (s3://, gs://, hdfs://, file://) through pyarrow's filesystems.

A worker copies one file to a local temporary file and reads it like any other: poppler and
Pillow need a path, and a form file is small next to its processing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePosixPath

from formreader.errors import InputError
from formreader.ingest import SUPPORTED_SUFFIXES

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(item: object) -> bool:
    # Callers must pass the user's string: pathlib folds "s3://b/k" into "s3:/b/k".
    return isinstance(item, str) and bool(_URI.match(item))


def _filesystem(uri: str):
    try:
        from pyarrow import fs
    except ImportError:
        raise InputError(f"{uri}: reading URIs needs pyarrow: pip install 'formreader[ray]'") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for unknown schemes, missing credentials
        raise InputError(f"{uri}: cannot open ({str(exc).splitlines()[0][:200]})") from exc


def list_uri(uri: str) -> list[str]:
    """The URI itself when it is a file (or missing: it becomes an error row), else the supported files under it."""
    from pyarrow import fs

    filesystem, root = _filesystem(uri)
    scheme = uri.split("://", 1)[0]
    try:
        info = filesystem.get_file_info(root)
        if info.type != fs.FileType.Directory:
            return [uri]
        entries = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    except Exception as exc:
        raise InputError(f"{uri}: cannot list ({str(exc).splitlines()[0][:200]})") from exc
    return [
        f"{scheme}://{e.path}"
        for e in sorted(entries, key=lambda e: e.path)
        if e.type == fs.FileType.File and PurePosixPath(e.path).suffix.lower() in SUPPORTED_SUFFIXES
    ]


def fetch(uri: str, directory: Path) -> Path:
    """Copy the file at `uri` into `directory`, keeping its name (the suffix picks the reader)."""
    filesystem, path = _filesystem(uri)
    local = Path(directory) / PurePosixPath(path).name
    with filesystem.open_input_stream(path) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return local
