"""`scan --resume`: a durable journal of finished files beside the output (`OUT.resume`).

JSON lines. The first line says which settings made the rows; then one line per finished file:
its path, size and mtime, and its rows exactly as the output will hold them. Each line is written
with one `write` and fsync'ed before the next file is recorded, so after kill -9 or a power cut at
any instant the journal holds whole lines of whole files plus at most one torn last line, which is
cut off when the journal is opened again. A rerun with the same settings takes the rows of the files
it finds there (same path, size and mtime) and reads only the others; the output, written once at
the end, is the same as that of an uninterrupted run. The journal is removed once the output is
written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from formreader.errors import ConfigError

FORMAT = 1


def journal_path(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".resume")


@dataclass(frozen=True)
class FileKey:
    """A file as the journal knows it: a changed file (size or mtime) is read again."""

    file: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileKey:
        try:
            st = os.stat(path)
            return cls(str(path), st.st_size, st.st_mtime_ns)
        except OSError:  # missing or unreadable: its row says why; it is read again on resume
            return cls(str(path), -1, -1)


class ScanJournal:
    def __init__(self, path: Path, settings: dict[str, object]):
        self.path = Path(path)
        self.settings = settings
        self.done: dict[FileKey, list[dict[str, object]]] = {}
        self._fd: int | None = None

    def open(self) -> ScanJournal:
        """Load the finished files of an earlier run (if any) and get ready to append."""
        good = self._load()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, good)  # a torn last line (killed mid-write) is dropped
        os.lseek(self._fd, good, os.SEEK_SET)
        if good == 0:
            self._append({"formreader_resume": FORMAT, "settings": self.settings})
            _fsync_dir(self.path.parent)  # the new journal's name survives a power cut too
        return self

    def _load(self) -> int:
        """Byte length of the journal's valid prefix; fills `done`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        good, first = 0, True
        for line in data.split(b"\n")[:-1]:  # the piece after the last newline is torn
            try:
                entry = json.loads(line)
            except ValueError:
                break
            if first:
                if not isinstance(entry, dict) or entry.get("formreader_resume") != FORMAT:
                    raise ConfigError(f"{self.path}: not a formreader resume journal; move it away or delete it")
                self._check_settings(entry.get("settings"))
                first = False
            else:
                key = FileKey(entry["file"], entry["size"], entry["mtime_ns"])
                self.done[key] = entry["rows"]
            good += len(line) + 1
        return good

    def _check_settings(self, old: object) -> None:
        if old == self.settings:
            return
        old = old if isinstance(old, dict) else {}
        diff = [f"{k}: {old.get(k)!r} then, {v!r} now" for k, v in self.settings.items() if old.get(k) != v]
        raise ConfigError(f"{self.path} was written by a scan with other settings ({'; '.join(diff)}). "
                          "Run the same command to resume it, or delete it to start over.")

    def rows_for(self, key: FileKey) -> list[dict[str, object]] | None:
        return self.done.get(key)

    def add(self, key: FileKey, rows: list[dict[str, object]]) -> None:
        self._append({"file": key.file, "size": key.size, "mtime_ns": key.mtime_ns, "rows": rows})
        self.done[key] = rows

    def _append(self, entry: dict[str, object]) -> None:
        # ensure_ascii: non-UTF-8 file names (lone surrogates) are stored as \udcXX escapes.
        data = (json.dumps(entry, ensure_ascii=True) + "\n").encode("ascii")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
