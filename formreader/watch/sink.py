"""Durable appends to the watch output (.jsonl or .csv), reconciled with the ledger after a crash.

Protocol, per batch: append the rows at the committed length, flush + fsync, THEN commit the ledger
(statuses + new length) in one transaction. After a crash at any instant:
- bytes past the committed length belong to files the ledger does not call done: they are cut off
  (a torn last line included) and those files are processed again;
- bytes up to the committed length are exactly the rows of committed files, each written once.
So the output holds every committed page once, and only those. Rows look exactly like `scan`'s.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path

from formreader.errors import ConfigError
from formreader.records import PageRecord
from formreader.writers import columns, output_format, render

log = logging.getLogger("formreader.watch")


def check_output(path: Path) -> str:
    fmt = output_format(path)
    if fmt not in ("jsonl", "csv"):
        raise ConfigError(f"{path}: watch appends rows as they come; use .jsonl or .csv (a .{fmt} file cannot be appended)")
    return fmt


class RowSink:
    def __init__(self, path: Path, field_names: list[str]):
        self.path = Path(path)
        self.fmt = check_output(self.path)
        self.field_names = field_names
        self.length = 0

    def open(self, committed: int | None) -> int:
        """Reconcile the file with the ledger's committed length; return the length to append at."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            target = size if committed is None else committed
            if size > target:
                log.warning("output %s: cutting %d bytes of rows never committed (the daemon stopped mid-batch); "
                            "their files are processed again", self.path, size - target)
                os.ftruncate(fd, target)
                os.fsync(fd)
            elif size < target:
                log.warning("output %s is shorter than the ledger says (%d < %d bytes): rotated or edited? "
                            "appending at its end", self.path, size, target)
                target = size
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)  # the new file's directory entry must survive a crash too
        self.length = target
        self._check_header()
        return target

    def append(self, records: list[PageRecord], pause: float = 0.0) -> int:
        """Write these rows at the committed length, fsync, and return the new length (not yet committed).

        `pause` (crash tests only) sleeps halfway through the write, so a kill can leave a torn line.
        """
        self._follow_rotation()
        data = self._encode(records)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.lseek(fd, self.length, os.SEEK_SET)
            half = len(data) // 2 if pause else len(data)
            _write_all(fd, data[:half])
            if pause:
                time.sleep(pause)
            _write_all(fd, data[half:])
            os.ftruncate(fd, self.length + len(data))  # in case an earlier failed append left more
            os.fsync(fd)
        finally:
            os.close(fd)
        self.length += len(data)
        return self.length

    def _follow_rotation(self) -> None:
        """An operator moved or truncated the output while we ran (log rotation): start a fresh one."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = -1
        if size >= self.length:
            return  # bytes past `length` are ours, from an append that failed midway: overwritten
        log.warning("output %s was moved or truncated; continuing in a new file", self.path)
        self.open(max(size, 0))

    def _encode(self, records: list[PageRecord]) -> bytes:
        text = render(records, self.field_names, self.fmt) if records else ""
        if self.fmt == "csv" and self.length > 0:
            text = text.split("\n", 1)[1] if "\n" in text else ""  # the header is already there
        # A decoder's message may quote a file name that is not UTF-8: keep the line valid UTF-8.
        return text.encode("utf-8", "backslashreplace")

    def _check_header(self) -> None:
        if self.fmt != "csv" or self.length == 0:
            return
        with open(self.path, encoding="utf-8", newline="") as fh:
            header = next(csv.reader(io.StringIO(fh.readline())), [])
        expected = columns(self.field_names)
        if header != expected:
            raise ConfigError(f"{self.path}: existing CSV columns {header} differ from this template's {expected}; "
                              "use another --out")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (network shares) refuse fsync on directories
    finally:
        os.close(fd)
