"""`formreader watch`: load the template and recognizer once, run the daemon, stop cleanly on signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from formreader.config import Config
from formreader.recognize.ensemble import load_reader
from formreader.template import Template
from formreader.watch.daemon import WatchDaemon, WatchSettings, WatchStats
from formreader.watch.sink import check_output
from formreader.watch.status import read_status

LOGGER = "formreader.watch"


def run_watch(settings: WatchSettings, cfg: Config) -> WatchStats:
    check_output(settings.out)  # usage errors first, before the model loads
    template = Template.load(cfg.template)
    predictor = load_reader(cfg.model, cfg.recognizer())
    stop, abort = threading.Event(), threading.Event()
    with _signals(stop, abort):
        stats = WatchDaemon(settings, template, predictor, cfg.pipeline(), stop, abort).run()
    if stats.abandoned:
        _leave_abandoned_threads()
    return stats


def _leave_abandoned_threads() -> None:
    """After a stop that abandoned a file mid-read, exit without interpreter teardown.

    The abandoned worker is still inside native code (poppler, OpenCV, onnxruntime); tearing the
    interpreter down under it can abort the process ("terminate called without an active
    exception", exit -6, seen once in CI). Everything the daemon owns is closed and flushed by now
    (ledger, output, moves), so a plain `os._exit(0)` loses nothing.
    """
    if any(t.is_alive() and t.daemon and t.name.startswith("prepare") for t in threading.enumerate()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@contextmanager
def _signals(stop: threading.Event, abort: threading.Event):
    """First SIGINT/SIGTERM: finish in-flight files (for up to --stop-grace seconds), then exit.
    Second: exit now; uncommitted files stay in the inbox and are read at the next start."""
    log = logging.getLogger(LOGGER)

    def handler(signum, _frame) -> None:
        if stop.is_set():
            log.warning("%s again: stopping now; files in flight are processed at the next start", signal.Signals(signum).name)
            abort.set()
        else:
            log.info("%s: finishing files in flight, then exiting (a second signal stops at once)", signal.Signals(signum).name)
            stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def status_text(state: Path) -> str:
    return "\n".join(read_status(state).lines())


def setup_logging(verbose: bool = False) -> None:
    """Rich output on a terminal; plain timestamped lines otherwise (journald, log files)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if logger.handlers:
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    # watchdog logs a harmless warning when its emitter is stopped mid-event; keep journald clean.
    logging.getLogger("watchdog").setLevel(logging.ERROR)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (test runners swap and close it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass
