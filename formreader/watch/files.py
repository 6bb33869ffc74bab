"""Inbox file handling: which names to take, content hashes, unique destinations, crash-safe moves."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from formreader.writers import atomic_write_text

# Copy tools write under a temporary name and rename when done: never touch those.
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", ".download", ".swp")
ERROR_SUFFIX = ".error.txt"


def is_candidate(path: Path) -> bool:
    name = path.name
    if not name or name[0] in ".~" or name.startswith("~$"):
        return False
    lower = name.lower()
    return not lower.endswith(TEMP_SUFFIXES) and not lower.endswith(ERROR_SUFFIX)


def list_inbox(inbox: Path) -> list[Path]:
    """Regular files directly in the inbox (subfolders such as done/ and failed/ are not watched)."""
    try:
        entries = list(os.scandir(inbox))
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries if _is_file(e) and is_candidate(Path(e.name)))


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def unique_dest(folder: Path, name: str, digest: str, reserved: set[str]) -> Path:
    """folder/name, or name.<hash8>.ext when taken (scanners reuse names such as scan0001.pdf)."""
    base = folder / name
    if not base.exists() and str(base) not in reserved:
        return base
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(1000):
        tag = digest[:8] if n == 0 else f"{digest[:8]}-{n}"
        candidate = folder / f"{stem}.{tag}{suffix}"
        if not candidate.exists() and str(candidate) not in reserved:
            return candidate
    raise OSError(f"no free name for {name} in {folder}")


def error_file(dest: Path) -> Path:
    return dest.with_name(dest.name + ERROR_SUFFIX)


def write_error(dest: Path, source: Path, digest: str, reasons: list[str]) -> Path:
    path = error_file(dest)
    lines = [f"file: {source.name}", f"sha256: {digest}", "cause:"] + [f"  {r}" for r in reasons]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def move_file(src: Path, dest: Path) -> None:
    """Rename when possible; across filesystems copy to a temporary name, fsync, rename, then unlink.

    Either way the file exists under at least one of its two names at every instant.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    tmp = dest.with_name(f".{dest.name}.moving")
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    os.unlink(src)
