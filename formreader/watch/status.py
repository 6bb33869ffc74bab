"""`formreader watch --status`: counts and throughput read from the ledger (safe while the daemon runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from formreader.errors import ConfigError
from formreader.watch.locks import daemon_pid
from formreader.watch.files import display, list_inbox
from formreader.watch.ledger import LEDGER_FILE, Entry, Ledger

WINDOW = 300.0  # seconds of recent activity the "now" throughput is measured on


@dataclass
class WatchStatus:
    state: Path
    pid: int | None
    meta: dict[str, str]
    counts: dict[str, int]
    waiting: int  # files in the inbox not claimed yet
    recent_pages: int
    recent_seconds: float
    total_pages: int
    total_seconds: float
    recent: list[Entry] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return self.counts.get("processing", 0) + self.waiting

    def lines(self) -> list[str]:
        c = self.counts
        running = f"running (pid {self.pid})" if self.pid else "not running"
        out = [
            f"state      {self.state}",
            f"daemon     {running}",
            f"inbox      {display(self.meta.get('inbox', '?'))}",
            f"output     {display(self.meta.get('out', '?'))}",
            f"done       {c.get('done', 0)}",
            f"failed     {c.get('failed', 0)}",
            f"pending    {self.pending} ({c.get('processing', 0)} in flight, {self.waiting} waiting in the inbox)",
            f"duplicates {c.get('duplicates', 0)}",
            (f"throughput {_rate(self.recent_pages, self.recent_seconds)} over the last {self.recent_seconds:.0f} s; "
             f"{_rate(self.total_pages, self.total_seconds)} since the daemon started ({self.total_pages} pages)"),
        ]
        if self.recent:
            out.append("recent")
            for e in self.recent:
                at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.finished or 0))
                why = f"  ({e.error})" if e.error else ""
                out.append(f"  {at}  {e.status:<6} {e.pages:>3} page(s)  {display(Path(e.dest).name)}{why}")
        return out


def _rate(pages: int, seconds: float) -> str:
    return f"{pages / seconds:.2f} pages/s" if seconds > 0 else "-"


def read_status(state: Path, recent: int = 10) -> WatchStatus:
    state = Path(state)
    if not (state / LEDGER_FILE).is_file():
        raise ConfigError(f"{state}: no watch ledger here (has `formreader watch` run with this --state?)")
    ledger = Ledger(state, read_only=True)
    try:
        meta = ledger.meta()
        counts = ledger.counts()
        now = time.time()
        started = float(meta.get("started", now))
        window_start = max(now - WINDOW, started)
        recent_pages, _, _ = ledger.pages_since(window_start)
        total_pages, _, _ = ledger.pages_since(started)
        entries = ledger.recent(recent)
        in_flight = {e.path for e in ledger.in_flight()}
    finally:
        ledger.close()
    pid = daemon_pid(state)
    inbox = Path(meta["inbox"]) if "inbox" in meta else None
    waiting = sum(1 for p in list_inbox(inbox) if str(p) not in in_flight) if inbox else 0
    # When the daemon has stopped, measure up to its last commit rather than up to now.
    end = now if pid else max([e.finished or started for e in entries] + [started])
    return WatchStatus(state, pid, meta, counts, waiting, recent_pages, max(end - window_start, 0.0),
                       total_pages, max(end - started, 0.0), entries)
