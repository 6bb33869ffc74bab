"""The watch ledger: one SQLite database in the state folder, keyed by the content hash of each file.

Statuses: ``processing`` (claimed, rows not yet committed), ``done`` and ``failed`` (rows committed).
The same database stores, per output file, how many bytes of it are committed: the rows of done
and failed files and nothing else. Committing a batch (statuses + new output length) is a single
SQLite transaction, which is what makes the output exactly-once (see `sink.py`).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    hash TEXT PRIMARY KEY,
    path TEXT NOT NULL,          -- where the file was when last claimed
    size INTEGER NOT NULL,
    status TEXT NOT NULL,        -- processing | done | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    dest TEXT NOT NULL DEFAULT '',  -- done/ or failed/ path, fixed before the rows are written
    moved INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    claimed REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE INDEX IF NOT EXISTS files_finished ON files(finished);
CREATE TABLE IF NOT EXISTS duplicates (
    path TEXT NOT NULL,
    hash TEXT NOT NULL,
    dest TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    path TEXT PRIMARY KEY,
    committed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

LEDGER_FILE = "ledger.sqlite"


class Claim(Enum):
    NEW = "new"  # first time this content is seen: process it
    RETRY = "retry"  # claimed before a crash and never committed: process it again
    DUPLICATE = "duplicate"  # this content was already committed
    BUSY = "busy"  # the same content is in flight under another name: wait for it


@dataclass(frozen=True)
class Entry:
    hash: str
    path: str
    size: int
    status: str
    attempts: int
    pages: int
    error: str
    dest: str
    moved: bool
    finished: float | None


@dataclass(frozen=True)
class Outcome:
    """What a committed batch says about one file."""

    hash: str
    status: str  # done | failed
    pages: int
    error: str
    dest: str
    seconds: float


class Ledger:
    def __init__(self, state_dir: Path, read_only: bool = False):
        self.path = Path(state_dir) / LEDGER_FILE
        if read_only:
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit mode: every transaction is explicit (BEGIN IMMEDIATE ... COMMIT).
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")  # `--status` reads while the daemon writes
            self.db.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not only kill -9
            self.db.executescript(SCHEMA)
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # -- claiming -------------------------------------------------------------------------
    def get(self, digest: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM files WHERE hash = ?", (digest,)).fetchone()
        return _entry(row) if row else None

    def claim(self, digest: str, path: Path, size: int, in_flight: set[str]) -> tuple[Claim, Entry | None]:
        """Decide what to do with a stable file whose content hash is `digest`, and record the claim."""
        with self._transaction():
            entry = self.get(digest)
            if entry is None:
                self.db.execute(
                    "INSERT INTO files(hash, path, size, status, attempts, claimed) VALUES (?, ?, ?, 'processing', 1, ?)",
                    (digest, str(path), size, time.time()),
                )
                return Claim.NEW, None
            if entry.status in ("done", "failed"):
                return Claim.DUPLICATE, entry
            if digest in in_flight:
                return Claim.BUSY, entry
            # 'processing' but not in flight here: a previous run died before committing it.
            self.db.execute(
                "UPDATE files SET path = ?, size = ?, attempts = attempts + 1, claimed = ? WHERE hash = ?",
                (str(path), size, time.time(), digest),
            )
            return Claim.RETRY, self.get(digest)

    def release(self, digest: str) -> None:
        """Forget an uncommitted claim (the file changed or vanished before its rows were written)."""
        with self._transaction():
            self.db.execute("DELETE FROM files WHERE hash = ? AND status = 'processing'", (digest,))

    def in_flight(self) -> list[Entry]:
        return [_entry(r) for r in self.db.execute("SELECT * FROM files WHERE status = 'processing'").fetchall()]

    # -- committing -----------------------------------------------------------------------
    def committed_length(self, output: Path) -> int | None:
        row = self.db.execute("SELECT committed FROM outputs WHERE path = ?", (str(output),)).fetchone()
        return int(row[0]) if row else None

    def set_committed_length(self, output: Path, length: int) -> None:
        with self._transaction():
            self._set_length(output, length)

    def commit(self, outcomes: list[Outcome], output: Path, length: int) -> None:
        """One transaction: these files are done/failed AND the output's committed length is `length`."""
        now = time.time()
        with self._transaction():
            for o in outcomes:
                self.db.execute(
                    "UPDATE files SET status = ?, pages = ?, error = ?, dest = ?, seconds = ?, finished = ? WHERE hash = ?",
                    (o.status, o.pages, o.error, o.dest, o.seconds, now, o.hash),
                )
            self._set_length(output, length)

    def mark_moved(self, *digests: str) -> None:
        with self._transaction():
            self.db.executemany("UPDATE files SET moved = 1 WHERE hash = ?", [(d,) for d in digests])

    def record_duplicate(self, path: Path, digest: str, dest: Path) -> None:
        with self._transaction():
            self.db.execute("INSERT INTO duplicates(path, hash, dest, at) VALUES (?, ?, ?, ?)", (str(path), digest, str(dest), time.time()))

    def unmoved(self) -> list[Entry]:
        """Committed files whose move to done/ or failed/ had not happened when the daemon stopped."""
        rows = self.db.execute("SELECT * FROM files WHERE status IN ('done', 'failed') AND moved = 0").fetchall()
        return [_entry(r) for r in rows]

    def reserved_dests(self) -> set[str]:
        rows = self.db.execute("SELECT dest FROM files WHERE moved = 0 AND dest != ''").fetchall()
        return {r[0] for r in rows}

    # -- reporting ------------------------------------------------------------------------
    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(values.items()))

    def meta(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT key, value FROM meta")}

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "processing": 0}
        for status, n in self.db.execute("SELECT status, COUNT(*) FROM files GROUP BY status"):
            out[status] = n
        out["duplicates"] = self.db.execute("SELECT COUNT(*) FROM duplicates").fetchone()[0]
        return out

    def pages_since(self, since: float) -> tuple[int, float, float | None]:
        """(pages, busy seconds, first finish time) of files committed after `since`."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(pages), 0), COALESCE(SUM(seconds), 0), MIN(finished) FROM files "
            "WHERE status IN ('done', 'failed') AND finished >= ?",
            (since,),
        ).fetchone()
        return int(row[0]), float(row[1]), row[2]

    def recent(self, limit: int = 10) -> list[Entry]:
        rows = self.db.execute(
            "SELECT * FROM files WHERE finished IS NOT NULL ORDER BY finished DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_entry(r) for r in rows]

    # -- internals ------------------------------------------------------------------------
    def _set_length(self, output: Path, length: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO outputs(path, committed) VALUES (?, ?)", (str(output), length))

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (sqlite3's own context manager does not BEGIN)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        hash=row["hash"],
        path=row["path"],
        size=row["size"],
        status=row["status"],
        attempts=row["attempts"],
        pages=row["pages"],
        error=row["error"],
        dest=row["dest"],
        moved=bool(row["moved"]),
        finished=row["finished"],
    )
