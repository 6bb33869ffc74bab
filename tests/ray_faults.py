"""Worker-process hook for the Ray tests (runtime_env worker_process_setup_hook).

A Ray worker process exits hard (os._exit, as on an OOM kill or a segfault) the first time it
meets a file named crash-prepare.png (in the preparing actor) or crash-recognize.png (in the
recognizer actor). The marker file, created atomically before dying, makes it once per test session.
"""

from __future__ import annotations

import os
from pathlib import Path

CRASH_PREPARE = "crash-prepare.png"
CRASH_RECOGNIZE = "crash-recognize.png"
MARKERS_ENV = "FORMREADER_TEST_FAULTS"


def install() -> None:
    from formreader.engines import ray_engine

    markers = Path(os.environ[MARKERS_ENV])
    real_prepare, real_finish = ray_engine.prepare_any, ray_engine.finish_pages

    def prepare_any(path, *args, **kwargs):
        if Path(str(path)).name == CRASH_PREPARE:
            _die_once(markers / "prepare")
        return real_prepare(path, *args, **kwargs)

    def finish_pages(pages, *args, **kwargs):
        if any(Path(p.record.file).name == CRASH_RECOGNIZE for p in pages):
            _die_once(markers / "recognize")
        return real_finish(pages, *args, **kwargs)

    ray_engine.prepare_any = prepare_any
    ray_engine.finish_pages = finish_pages


def _die_once(marker: Path) -> None:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(1)
