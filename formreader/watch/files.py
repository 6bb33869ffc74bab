"""Inbox file handling: which names to take, content hashes, unique destinations, crash-safe moves."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
from pathlib import Path

from formreader.writers import atomic_write_text, printable

# Copy tools write under a temporary name and rename when done: never touch those.
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", ".download", ".swp")
ERROR_SUFFIX = ".error.txt"


def is_candidate(path: Path) -> bool:
    name = path.name
    if not name or name[0] in ".~" or name.startswith("~$"):
        return False
    lower = name.lower()
    return not lower.endswith(TEMP_SUFFIXES) and not lower.endswith(ERROR_SUFFIX)


def list_inbox(inbox: Path, regular_only: bool = True) -> list[Path]:
    """Candidate names directly in the inbox (subfolders such as done/ and failed/ are not watched).

    With `regular_only=False` FIFOs, devices, sockets and symlinks are listed too, so that the
    daemon can say once why it leaves them alone.
    """
    try:
        entries = list(os.scandir(inbox))
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries
                  if is_candidate(Path(e.name)) and (not regular_only or _is_regular(e)) and not _is_dir(e))


def _is_regular(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def not_regular(path: Path) -> str | None:
    """Why `path` is not a plain file we may read (a FIFO would block open(), /dev/zero never ends), or None."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None  # gone: the caller notices
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "not a regular file"


class NotRegularFile(OSError):
    """The path turned into something other than a regular file between the listing and the open."""


class Interrupted(Exception):
    """Hashing stopped because the daemon is stopping."""


def open_regular(path: Path) -> int:
    """A read-only descriptor on `path`, refused unless it is a regular file; never blocks.

    O_NONBLOCK: opening a FIFO with no writer would wait forever; O_NOFOLLOW: a symlink swapped in
    after the listing is refused, not followed (to /dev/zero, or out of the inbox).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "a symbolic link", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(errno.EINVAL, not_regular(path) or "not a regular file", str(path))
    return fd


def content_hash(path: Path, chunk: int = 1 << 20, stopping=lambda: False) -> str:
    """SHA-256 of the file's bytes, up to the size it had when opened (a file that keeps growing is
    caught by the signature check that follows); `stopping()` is checked between chunks."""
    fd = open_regular(path)
    try:
        remaining = os.fstat(fd).st_size
        h = hashlib.sha256()
        while remaining > 0:
            if stopping():
                raise Interrupted(str(path))
            block = os.read(fd, min(chunk, remaining))
            if not block:
                break
            h.update(block)
            remaining -= len(block)
        return h.hexdigest()
    finally:
        os.close(fd)


def open_for_writing(path: Path) -> bool | None:
    """Is another process of this machine holding `path` open for writing? None: cannot tell.

    First a read lease (fcntl F_SETLEASE): the kernel grants it only when nobody has the file open
    for writing, whoever they are; it needs us to own the file (or CAP_LEASE) and a local
    filesystem. Otherwise /proc/*/fd, which shows the processes we may inspect. Writers on other
    machines (a share) are invisible either way.
    """
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return True
        return _writer_in_proc(path)  # EACCES (not ours), EINVAL (filesystem without leases)
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _writer_in_proc(path: Path) -> bool | None:
    target = os.fsencode(os.path.abspath(path))
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to inspect
        for fd in fds:
            try:
                if os.readlink(os.fsencode(f"{fd_dir}/{fd}")) != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                    flags = next((int(line.split()[1], 8) for line in fh if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
                return True
    return False


def display(path: Path | str) -> str:
    """A path as valid UTF-8 text (rows, logs, notes): bytes that are not UTF-8 shown as \\xNN."""
    return printable(str(path))


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
    lines = [f"file: {display(source.name)}", f"sha256: {digest}", "cause:"] + [f"  {display(r)}" for r in reasons]
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
