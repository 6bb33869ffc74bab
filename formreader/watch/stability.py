"""Settle detection: a file is ready once its size and mtime have not changed for `settle` seconds.

An empty file waits `empty_grace` instead (a scanner may create the name long before it writes).
Observation-based, on our own monotonic clock: the mtime a network share reports comes from the
server's clock, so "mtime older than N seconds" cannot be trusted, but "unchanged across N seconds
of our observations" can. Slow copies keep changing size/mtime and are never taken half-written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Signature:
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> Signature | None:
        try:
            st = os.lstat(path)  # the entry itself: a symlink's target is never ours to judge
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class _Watch:
    signature: Signature
    since: float  # when this signature was first observed


@dataclass
class StabilityTracker:
    settle: float
    empty_grace: float = 0.0  # an empty file waits this long: scanners create the name first, write later
    _files: dict[Path, _Watch] = field(default_factory=dict)

    def observe(self, path: Path, now: float) -> Signature | None:
        """Record the file's current signature; return it when the file is stable, else None."""
        sig = Signature.of(path)
        if sig is None:
            self._files.pop(path, None)
            return None
        seen = self._files.get(path)
        if seen is None or seen.signature != sig:
            self._files[path] = _Watch(sig, now)
            return None
        wait = max(self.settle, self.empty_grace) if sig.size == 0 else self.settle
        return sig if now - seen.since >= wait else None

    def hold(self, path: Path, now: float) -> None:
        """Start the clock again for a file that looked stable but is not ready (still open for writing)."""
        seen = self._files.get(path)
        if seen is not None:
            seen.since = now

    def forget(self, path: Path) -> None:
        self._files.pop(path, None)

    def tracked(self) -> list[Path]:
        return list(self._files)

    def __len__(self) -> int:
        return len(self._files)
