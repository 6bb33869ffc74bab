"""Who may write: one daemon per state folder, and one writer per output file, whatever its state.

Both are `flock`s, released by the kernel when the process dies, even on kill -9, so a crashed
daemon never blocks its restart. The output's lock sits beside it (OUT.lock) rather than on the
output itself, so that rotating the output (moving it away) keeps it locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from formreader.errors import ConfigError

STATE_LOCK = "daemon.lock"


class FileLock:
    """An exclusive, non-blocking flock on `path`; the file holds the owner's description."""

    def __init__(self, path: Path, owner: str, refusal: str):
        self.path = Path(path)
        self.owner = owner
        self.refusal = refusal  # message when taken; {other} is what the holder wrote
        self.fd = -1

    def __enter__(self) -> FileLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 4096, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise ConfigError(self.refusal.format(other=other or "pid ?")) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{self.owner}\n".encode(errors="backslashreplace"), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def state_lock(state: Path) -> FileLock:
    return FileLock(Path(state) / STATE_LOCK, str(os.getpid()),
                    f"another watch daemon (pid {{other}}) is using state folder {state}")


def output_lock(out: Path, state: Path) -> FileLock:
    """Two daemons appending to one output would interleave rows and cut each other's tails."""
    out = Path(out)
    return FileLock(out.with_name(out.name + ".lock"), f"pid {os.getpid()}, state {state}",
                    f"another watch daemon ({{other}}) is writing {out}; one output, one daemon")


def daemon_pid(state: Path) -> int | None:
    """The pid of the daemon holding this state folder, or None when none runs."""
    path = Path(state) / STATE_LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None
