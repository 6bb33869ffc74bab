"""The watch ledger: one SQLite database in the state folder, keyed by the content hash of each file.

Paths are stored as text, or as bytes (BLOB) when the name is not valid UTF-8: any name a
filesystem allows is recorded and found again.

Statuses: ``processing`` (claimed, rows not yet committed), ``done`` and ``failed`` (rows committed).
The same database stores, per output file, how many bytes of it are committed: the rows of done
and failed files and nothing else. Committing a batch (statuses + new output length) is a single
SQLite transaction, which is what makes the output exactly-once (see `sink.py`).
"""

from __future__ import annotations

import os
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
    attempts INTEGER NOT NULL DEFAULT 0,  -- times claimed
    crashes INTEGER NOT NULL DEFAULT 0,   -- times the daemon died while this file was processed ALONE
    solo INTEGER NOT NULL DEFAULT 0,      -- claimed in isolation (no other file in flight)
    pages INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    dest TEXT NOT NULL DEFAULT '',  -- done/ or failed/ path, fixed before the rows are written
    moved INTEGER NOT NULL DEFAULT 0,
    dest_sig TEXT NOT NULL DEFAULT '',  -- failed files: size:mtime_ns once moved (a late writer changes it)
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
    crashes: int
    solo: bool
    pages: int
    error: str
    dest: str
    moved: bool
    dest_sig: str
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
            self._migrate()
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # -- claiming -------------------------------------------------------------------------
    def get(self, digest: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM files WHERE hash = ?", (digest,)).fetchone()
        return _entry(row) if row else None

    def claim(self, digest: str, path: Path, size: int, in_flight: set[str], solo: bool = False) -> tuple[Claim, Entry | None]:
        """Decide what to do with a stable file whose content hash is `digest`, and record the claim.

        `solo`: nothing else is in flight, so a crash during this file is this file's fault.
        """
        with self._transaction():
            entry = self.get(digest)
            if entry is None:
                self.db.execute(
                    "INSERT INTO files(hash, path, size, status, attempts, solo, claimed) VALUES (?, ?, ?, 'processing', 1, ?, ?)",
                    (digest, _db_path(path), size, int(solo), time.time()),
                )
                return Claim.NEW, None
            if entry.status in ("done", "failed"):
                return Claim.DUPLICATE, entry
            if digest in in_flight:
                return Claim.BUSY, entry
            # 'processing' but not in flight here: a previous run died before committing it.
            self.db.execute(
                "UPDATE files SET path = ?, size = ?, attempts = attempts + 1, solo = ?, claimed = ? WHERE hash = ?",
                (_db_path(path), size, int(solo), time.time(), digest),
            )
            return Claim.RETRY, self.get(digest)

    def blame_crash(self) -> list[Entry]:
        """At start: files still `processing` were in flight when the last run died. A file that was
        processed alone takes the blame (crashes + 1); the others are only suspects, retried alone."""
        with self._transaction():
            self.db.execute("UPDATE files SET crashes = crashes + 1 WHERE status = 'processing' AND solo = 1")
            self.db.execute("UPDATE files SET solo = 0 WHERE status = 'processing'")
        return self.in_flight()

    def release(self, digest: str, keep_blame: bool = False) -> None:
        """Forget an uncommitted claim (the file changed or vanished before its rows were written).

        `keep_blame` (a file left behind at a stop): a file already blamed for crashes keeps its
        count, as a suspect that is not blamed for this stop; the others are simply forgotten.
        """
        with self._transaction():
            if keep_blame:
                self.db.execute("UPDATE files SET solo = 0 WHERE hash = ? AND status = 'processing' AND crashes > 0", (digest,))
                self.db.execute("DELETE FROM files WHERE hash = ? AND status = 'processing' AND crashes = 0", (digest,))
            else:
                self.db.execute("DELETE FROM files WHERE hash = ? AND status = 'processing'", (digest,))

    def in_flight(self) -> list[Entry]:
        return [_entry(r) for r in self.db.execute("SELECT * FROM files WHERE status = 'processing'").fetchall()]

    # -- committing -----------------------------------------------------------------------
    def committed_length(self, output: Path) -> int | None:
        row = self.db.execute("SELECT committed FROM outputs WHERE path = ?", (_db_path(output),)).fetchone()
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
                    (o.status, o.pages, _text(o.error), _db_path(o.dest), o.seconds, now, o.hash),
                )
            self._set_length(output, length)

    def mark_moved(self, *digests: str, sigs: dict[str, str] | None = None) -> None:
        """`sigs`: digest -> signature of the file where it now lies (failed/), to notice late writers."""
        sigs = sigs or {}
        with self._transaction():
            self.db.executemany("UPDATE files SET moved = 1, dest_sig = ? WHERE hash = ?", [(sigs.get(d, ""), d) for d in digests])

    def watched_failures(self, days: float = 7.0) -> list[Entry]:
        """Failed files of the last `days`, moved to failed/, whose later changes are watched."""
        rows = self.db.execute("SELECT * FROM files WHERE status = 'failed' AND moved = 1 AND dest_sig != '' "
                               "AND finished >= ?", (time.time() - days * 86400,)).fetchall()
        return [_entry(r) for r in rows]

    def unwatch(self, digest: str) -> None:
        with self._transaction():
            self.db.execute("UPDATE files SET dest_sig = '' WHERE hash = ?", (digest,))

    def record_duplicate(self, path: Path, digest: str, dest: Path) -> None:
        with self._transaction():
            self.db.execute("INSERT INTO duplicates(path, hash, dest, at) VALUES (?, ?, ?, ?)", (_db_path(path), digest, _db_path(dest), time.time()))

    def unmoved(self) -> list[Entry]:
        """Committed files whose move to done/ or failed/ had not happened when the daemon stopped."""
        rows = self.db.execute("SELECT * FROM files WHERE status IN ('done', 'failed') AND moved = 0").fetchall()
        return [_entry(r) for r in rows]

    def reserved_dests(self) -> set[str]:
        rows = self.db.execute("SELECT dest FROM files WHERE moved = 0 AND dest != ''").fetchall()
        return {_fs_path(r[0]) for r in rows}

    # -- reporting ------------------------------------------------------------------------
    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                [(k, _db_path(v)) for k, v in values.items()])

    def meta(self) -> dict[str, str]:
        return {r[0]: _fs_path(r[1]) for r in self.db.execute("SELECT key, value FROM meta")}

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
        self.db.execute("INSERT OR REPLACE INTO outputs(path, committed) VALUES (?, ?)", (_db_path(output), length))

    def _transaction(self):
        return _Transaction(self.db)

    def _migrate(self) -> None:
        """Ledgers written by an older formreader lack the newer columns: add them (their defaults hold)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(files)")}
        for column, decl in (("crashes", "INTEGER NOT NULL DEFAULT 0"), ("solo", "INTEGER NOT NULL DEFAULT 0"),
                             ("dest_sig", "TEXT NOT NULL DEFAULT ''")):
            if column not in have:
                self.db.execute(f"ALTER TABLE files ADD COLUMN {column} {decl}")


def _db_path(path) -> str | bytes:
    """Text when the name is valid UTF-8 (readable with the sqlite3 shell), else its raw bytes."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text)


def _fs_path(value: str | bytes) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _text(value: str) -> str:
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


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
        path=_fs_path(row["path"]),
        size=row["size"],
        status=row["status"],
        attempts=row["attempts"],
        crashes=row["crashes"],
        solo=bool(row["solo"]),
        pages=row["pages"],
        error=row["error"],
        dest=_fs_path(row["dest"]),
        moved=bool(row["moved"]),
        dest_sig=row["dest_sig"],
        finished=row["finished"],
    )
