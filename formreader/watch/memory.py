"""Give memory back to the system after big files (glibc malloc; a no-op elsewhere).

A long-running daemon that once decoded a huge page keeps that memory: glibc serves freed blocks
from per-thread arenas and rarely returns them. Two knobs, both through ctypes so the service
needs no environment variable: fewer arenas (worker threads otherwise each grow their own), and
`malloc_trim` once the daemon is idle, which hands free pages of every arena back to the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("formreader.watch")
M_ARENA_MAX = -8  # mallopt parameter number, glibc malloc.h

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.malloc_trim, lib.mallopt  # noqa: B018 - both exist only in glibc
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def limit_arenas(arenas: int = 2) -> bool:
    """Like MALLOC_ARENA_MAX=2; call before worker threads start."""
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def release() -> bool:
    """Return free heap pages to the kernel (ms on a small heap; called when the daemon goes idle)."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))
