"""The watch loop: discover -> settle -> hash + claim -> prepare (threads) -> batch -> recognize -> commit -> move.

One thread owns the ledger, the output and the recognizer (this loop); worker threads only run
`prepare_file` (ingest, align, segment), a pure function of the file. Batches of pages from several
files go through the recognizer together; a batch is flushed when it is full, when its oldest file
has waited `latency` seconds, when nothing else is coming, or at shutdown.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from formreader.align import Aligner
from formreader.errors import ConfigError
from formreader.pipeline import (
    PipelineSettings,
    PreparedPage,
    finish_pages,
    prepare_file,
)
from formreader.recognize.predictor import Predictor
from formreader.records import PageRecord
from formreader.template import Template
from formreader.watch.files import (
    content_hash,
    is_candidate,
    list_inbox,
    move_file,
    unique_dest,
    write_error,
)
from formreader.watch.ledger import Claim, Entry, Ledger, Outcome
from formreader.watch.sink import RowSink, check_output
from formreader.watch.stability import Signature, StabilityTracker

log = logging.getLogger("formreader.watch")
LOCK_FILE = "daemon.lock"
RETRY_WRITE_S = 10.0


@dataclass(frozen=True)
class WatchSettings:
    inbox: Path
    out: Path
    state: Path
    done: Path
    failed: Path
    settle: float = 3.0  # seconds a file's size and mtime must stay unchanged
    poll: float | None = None  # None: filesystem events; a number: poll the folder (network shares)
    latency: float = 2.0  # longest a prepared file waits for others to fill a recognizer batch
    rescan: float = 30.0  # full listing even with events: some filesystems drop events
    tick: float = 0.2  # how often settling files are re-checked
    max_attempts: int = 5  # a file that was in flight at this many crashes is failed, not retried forever
    workers: int = 2
    once: bool = False  # exit when the inbox is empty and nothing is in flight (cron, tests)
    fault_pause: float = 0.0  # crash tests only: widen the append / commit / move windows so kills land there

    @classmethod
    def for_inbox(cls, inbox: Path, out: Path, state: Path | None = None, done: Path | None = None,
                  failed: Path | None = None, **kw) -> WatchSettings:
        # Absolute paths: the ledger stores them, and the daemon may be restarted from elsewhere.
        inbox = Path(inbox).resolve()
        return cls(inbox=inbox, out=Path(out).resolve(), state=Path(state or inbox / ".formreader").resolve(),
                   done=Path(done or inbox / "done").resolve(), failed=Path(failed or inbox / "failed").resolve(), **kw)


@dataclass
class WatchStats:
    done: int = 0
    failed: int = 0
    duplicates: int = 0
    pages: int = 0
    retried: int = 0  # files found in flight from a previous run and processed again
    busy_seconds: float = 0.0


@dataclass
class _Job:
    """A claimed file on its way through the pipeline."""

    path: Path
    digest: str
    signature: Signature
    claimed: float
    future: Future | None = None
    pages: list[PreparedPage] = field(default_factory=list)
    ready: float = 0.0  # when prepare_file finished

    @property
    def crops(self) -> int:
        return sum(len(p.crops) for p in self.pages)


class WatchDaemon:
    def __init__(self, settings: WatchSettings, template: Template, predictor: Predictor,
                 pipeline: PipelineSettings = PipelineSettings(), stop: threading.Event | None = None,
                 abort: threading.Event | None = None):
        self.s = settings
        self.template = template
        self.predictor = predictor
        self.pipeline = pipeline
        self.field_names = template.layout.field_names
        self.stop = stop or threading.Event()  # finish in-flight work, then return
        self.abort = abort or threading.Event()  # return now; in-flight files are retried next start
        self.stats = WatchStats()
        self._wake = threading.Event()
        self._events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._tracker = StabilityTracker(settings.settle)
        self._jobs: dict[str, _Job] = {}  # digest -> job, claimed and not yet committed
        self._busy: dict[Path, str] = {}  # path -> digest in flight under another name
        self._stuck: dict[Path, Signature | None] = {}  # left alone until they change (e.g. move refused)
        self._local = threading.local()  # one Aligner per worker thread: OpenCV objects are not shared
        self._inbox = settings.inbox.resolve()

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> WatchStats:
        check_output(self.s.out)
        for folder in (self.s.inbox, self.s.state, self.s.done, self.s.failed):
            Path(folder).mkdir(parents=True, exist_ok=True)
        with _StateLock(self.s.state):
            self.ledger = Ledger(self.s.state)
            try:
                self._start()
                self._loop()
            finally:
                self.ledger.close()
        return self.stats

    def _start(self) -> None:
        self.sink = RowSink(self.s.out, self.field_names)
        committed = self.ledger.committed_length(self.s.out.resolve())
        length = self.sink.open(committed)
        if committed != length:
            self.ledger.set_committed_length(self.s.out.resolve(), length)
        self.ledger.set_meta({"inbox": str(self.s.inbox.resolve()), "out": str(self.s.out.resolve()),
                              "done": str(self.s.done.resolve()), "failed": str(self.s.failed.resolve()),
                              "pid": str(os.getpid()), "started": str(time.time())})
        self._finish_moves()
        self._forget_vanished()
        log.info("watching %s -> %s (%s, settle %.1fs, latency %.1fs)", self.s.inbox, self.s.out,
                 f"polling every {self.s.poll:g}s" if self.s.poll else "filesystem events", self.s.settle, self.s.latency)

    def _loop(self) -> None:
        observer = self._observer()
        # Without events, the listing is the only way to see new files: do it often.
        rescan = self.s.rescan if observer is not None else min(self.s.rescan, self.s.poll or 2.0)
        pool = ThreadPoolExecutor(max_workers=max(1, self.s.workers), thread_name_prefix="prepare")
        next_rescan = 0.0
        try:
            while not self.abort.is_set():
                now = time.monotonic()
                if now >= next_rescan:
                    for path in list_inbox(self.s.inbox):
                        self._events.put(path)
                    next_rescan = now + rescan
                if not self.stop.is_set():
                    self._discover(now, pool)
                self._harvest()
                if self._should_flush(now):
                    self._flush()
                if self._finished():
                    break
                self._wake.wait(self._sleep_time())
                self._wake.clear()
        finally:
            if observer is not None:
                observer.stop()
            pool.shutdown(wait=not self.abort.is_set(), cancel_futures=True)
            if observer is not None:
                observer.join(timeout=5)
        if self._jobs:
            log.warning("stopping with %d file(s) in flight: they will be processed at the next start", len(self._jobs))
        log.info("stopped: %d done, %d failed, %d duplicate(s), %d pages", self.stats.done, self.stats.failed,
                 self.stats.duplicates, self.stats.pages)

    def _finished(self) -> bool:
        if self._jobs:
            return False
        if self.stop.is_set():
            return True
        return self.s.once and not len(self._tracker) and not self._busy and self._events.empty()

    def _sleep_time(self) -> float:
        if self._jobs or len(self._tracker) or self._busy:
            return self.s.tick
        return min(self.s.rescan, 1.0)

    def _observer(self):
        """Watchdog only wakes the loop early; the folder listing stays the source of truth."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        daemon = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory:
                    return
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    if p:
                        daemon._events.put(Path(os.fsdecode(p)))
                daemon._wake.set()

        observer = PollingObserver(timeout=self.s.poll) if self.s.poll else Observer()
        try:
            observer.schedule(Handler(), str(self.s.inbox), recursive=False)
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit reached: polling by listing still works
            log.warning("filesystem events unavailable (%s); relying on listing every %.0fs", exc, self.s.rescan)
            return None
        return observer

    # -- discovery and claiming -------------------------------------------------------------
    def _discover(self, now: float, pool: ThreadPoolExecutor) -> None:
        while not self._events.empty():
            path = self._events.get()
            ours = path.parent.resolve() == self._inbox and is_candidate(path) and not self._in_flight(path)
            if ours and (path not in self._stuck or self._stuck[path] != Signature.of(path)):
                self._stuck.pop(path, None)
                self._tracker.observe(path, now)
        self._retry_busy()
        stable = []
        for path in self._tracker.tracked():
            sig = self._tracker.observe(path, now)
            if sig is not None:
                stable.append((path, sig))
        for path, sig in stable:
            if len(self._jobs) >= self._capacity():
                break  # back-pressure: the rest stay stable in the tracker and are claimed later
            self._tracker.forget(path)
            self._claim(path, sig, pool)

    def _capacity(self) -> int:
        return max(4, 2 * self.s.workers, self.predictor.batch_size // 2)

    def _in_flight(self, path: Path) -> bool:
        return path in self._busy or any(j.path == path for j in self._jobs.values())

    def _claim(self, path: Path, sig: Signature, pool: ThreadPoolExecutor) -> None:
        try:
            digest = content_hash(path)
        except OSError as exc:
            log.warning("%s: cannot read yet (%s); will retry", path.name, exc)
            self._tracker.observe(path, time.monotonic())
            return
        if Signature.of(path) != sig:  # written to while we hashed it: settle again
            self._tracker.observe(path, time.monotonic())
            return
        claim, entry = self.ledger.claim(digest, path, sig.size, set(self._jobs))
        if claim is Claim.BUSY:
            self._busy[path] = digest
        elif claim is Claim.DUPLICATE:
            self._duplicate(path, digest, entry)
        else:
            job = _Job(path, digest, sig, time.monotonic())
            self._jobs[digest] = job
            if claim is Claim.RETRY:
                self.stats.retried += 1
                log.info("%s: retrying (attempt %d; the previous run stopped before committing it)", path.name, entry.attempts)
                if entry.attempts > self.s.max_attempts:
                    job.pages = [_error_page(path, f"gave up after {entry.attempts - 1} attempts: the daemon stopped "
                                                   "every time while processing this file")]
                    job.ready = time.monotonic()
                    return
            log.info("%s: claimed (sha256 %s, %d bytes)", path.name, digest[:12], sig.size)
            job.future = pool.submit(self._prepare, path)
            job.future.add_done_callback(lambda _: self._wake.set())  # harvest without waiting a tick

    def _retry_busy(self) -> None:
        """A file whose content was in flight under another name: once that one commits, it is a duplicate."""
        for path, digest in list(self._busy.items()):
            if digest in self._jobs:
                continue
            del self._busy[path]
            if path.exists():
                self._tracker.observe(path, time.monotonic())

    def _prepare(self, path: Path) -> list[PreparedPage]:
        aligner = getattr(self._local, "aligner", None)
        if aligner is None:
            aligner = self._local.aligner = Aligner(self.template, self.pipeline.aligner)
        return prepare_file(path, self.template, self.pipeline, aligner)

    def _harvest(self) -> None:
        for job in self._jobs.values():
            if job.future is not None and job.future.done():
                try:
                    job.pages = job.future.result()
                except Exception as exc:  # a bug or a library crash on one file must not stop the daemon
                    log.exception("%s: processing raised", job.path.name)
                    job.pages = [_error_page(job.path, f"processing failed ({type(exc).__name__}: {exc})")]
                job.future = None
                job.ready = time.monotonic()

    # -- batching and committing ------------------------------------------------------------
    def _ready_jobs(self) -> list[_Job]:
        return sorted((j for j in self._jobs.values() if j.future is None), key=lambda j: j.ready)

    def _should_flush(self, now: float) -> bool:
        ready = self._ready_jobs()
        if not ready:
            return False
        running = any(j.future is not None for j in self._jobs.values())
        if self.stop.is_set() or not running:
            return True  # nothing else is coming soon: do not make a lone file wait
        full = sum(j.crops for j in ready) >= self.predictor.batch_size
        return full or now - ready[0].ready >= self.s.latency

    def _flush(self) -> None:
        jobs = [j for j in self._ready_jobs() if self._unchanged(j)]
        if not jobs:
            return
        t0 = time.monotonic()
        self._recognize(jobs)
        reserved = self.ledger.reserved_dests()
        outcomes, records = [], []
        for job in jobs:
            outcome = self._outcome(job, reserved, time.monotonic() - job.claimed)
            reserved.add(outcome.dest)
            for page in job.pages:
                page.record.file = outcome.dest  # the row names where the file now lives
                records.append(page.record)
            outcomes.append(outcome)
        try:
            length = self.sink.append(records, self.s.fault_pause)  # fsync'ed before the ledger says "done"
        except OSError as exc:  # disk full, share gone: keep the batch in memory and try again later
            log.error("cannot write %s (%s); retrying in %.0fs", self.s.out, exc, RETRY_WRITE_S)
            self.stop.wait(RETRY_WRITE_S)
            return
        time.sleep(self.s.fault_pause)
        self.ledger.commit(outcomes, self.s.out.resolve(), length)
        self.stats.busy_seconds += time.monotonic() - t0
        time.sleep(self.s.fault_pause)
        moved = []
        for job, outcome in zip(jobs, outcomes):
            del self._jobs[job.digest]
            if self._settle_file(job.path, outcome.hash, outcome.status, Path(outcome.dest), job.pages):
                moved.append(job.digest)
        if moved:
            self.ledger.mark_moved(*moved)  # one transaction per batch; a crash before it only re-moves nothing

    def _recognize(self, jobs: list[_Job]) -> None:
        """One recognizer call for the whole batch; if it raises, file by file, so one bad file fails alone."""
        try:
            finish_pages([p for j in jobs for p in j.pages], self.predictor, self.pipeline)
            return
        except Exception:
            log.exception("recognizer failed on a batch of %d file(s); retrying them one by one", len(jobs))
        for job in jobs:
            try:
                finish_pages(job.pages, self.predictor, self.pipeline)
            except Exception as exc:
                job.pages = [_error_page(job.path, f"recognizer failed ({type(exc).__name__}: {exc})")]

    def _unchanged(self, job: _Job) -> bool:
        """A file that changed after it was read (a copy that stalled longer than `settle`) is read again."""
        if Signature.of(job.path) == job.signature:
            return True
        log.warning("%s: changed or vanished while being processed; reading it again when it settles", job.path.name)
        self.ledger.release(job.digest)
        del self._jobs[job.digest]
        return False

    def _outcome(self, job: _Job, reserved: set[str], seconds: float) -> Outcome:
        # A file is failed when no page could be read as this form: unreadable, empty, corrupt, or
        # a readable image/PDF that is not this form at all. Its rows still carry the reason.
        errors = [p.record.error for p in job.pages]
        failed = all(errors)
        folder = self.s.failed if failed else self.s.done
        dest = unique_dest(folder, job.path.name, job.digest, reserved)
        reason = "; ".join(dict.fromkeys(e for e in errors if e)) if failed else ""
        return Outcome(job.digest, "failed" if failed else "done", len(job.pages), reason, str(dest), seconds)

    def _settle_file(self, src: Path, digest: str, status: str, dest: Path, pages: list[PreparedPage]) -> bool:
        """After the commit: .error.txt for failures, then move out of the inbox (never delete)."""
        try:
            if status == "failed":
                write_error(dest, src, digest, [f"page {p.record.page}: {p.record.error}" for p in pages])
            move_file(src, dest)
        except OSError as exc:
            log.error("%s: committed but cannot move to %s (%s); will retry", src.name, dest, exc)
            self._stuck[src] = Signature.of(src)
            return False
        n = len(pages)
        self.stats.pages += n
        if status == "failed":
            self.stats.failed += 1
            log.warning("%s: FAILED (%s) -> %s", src.name, pages[0].record.error if n == 1 else f"{n} pages unreadable", dest)
        else:
            self.stats.done += 1
            review = sum(p.record.needs_review for p in pages)
            log.info("%s: done, %d page(s), %d to review -> %s", src.name, n, review, dest)
        return True

    # -- duplicates and recovery -------------------------------------------------------------
    def _duplicate(self, path: Path, digest: str, entry: Entry | None) -> None:
        assert entry is not None
        if entry.path == str(path) and not entry.moved:
            self._finish_move(entry)  # our own committed file whose move was interrupted
            return
        folder = self.s.failed if entry.status == "failed" else self.s.done
        dest = unique_dest(folder, path.name, digest, self.ledger.reserved_dests())
        try:
            if entry.status == "failed":
                write_error(dest, path, digest, [f"duplicate of {entry.dest}, which failed: {entry.error}"])
            move_file(path, dest)
        except OSError as exc:
            log.error("%s: duplicate, but cannot move it to %s (%s)", path.name, dest, exc)
            self._stuck[path] = Signature.of(path)
            return
        self.ledger.record_duplicate(path, digest, dest)
        self.stats.duplicates += 1
        log.info("%s: duplicate of %s (already %s), no new rows -> %s", path.name, Path(entry.dest).name, entry.status, dest)

    def _forget_vanished(self) -> None:
        """Claims of a previous run whose file left the inbox before its rows were written."""
        for entry in self.ledger.in_flight():
            if not Path(entry.path).exists():
                log.warning("%s: was being processed when the daemon stopped and is no longer in the inbox; "
                            "if it comes back (under any name) it is processed then", Path(entry.path).name)
                self.ledger.release(entry.hash)

    def _finish_moves(self) -> None:
        for entry in self.ledger.unmoved():
            self._finish_move(entry)

    def _finish_move(self, entry: Entry) -> None:
        src, dest = Path(entry.path), Path(entry.dest)
        try:
            if src.exists():
                if entry.status == "failed":
                    write_error(dest, src, entry.hash, [entry.error])
                move_file(src, dest)
                log.info("%s: committed before the last stop, moved now -> %s", src.name, dest)
            self.ledger.mark_moved(entry.hash)
        except OSError as exc:
            log.error("%s: cannot move to %s (%s)", src.name, dest, exc)
            self._stuck[src] = Signature.of(src)


def _error_page(path: Path, message: str) -> PreparedPage:
    return PreparedPage(PageRecord(file=str(path), page=1, error=message))


class _StateLock:
    """One daemon per state folder: two appending to one output would break exactly-once.

    flock is released by the kernel when the process dies, even on kill -9.
    """

    def __init__(self, state: Path):
        self.path = Path(state) / LOCK_FILE
        self.fd = -1

    def __enter__(self) -> _StateLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise ConfigError(f"another watch daemon (pid {other or '?'}) is using state folder {self.path.parent}")
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def daemon_pid(state: Path) -> int | None:
    """The pid of the daemon holding this state folder, or None when none runs."""
    path = Path(state) / LOCK_FILE
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
