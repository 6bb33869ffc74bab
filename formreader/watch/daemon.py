"""The watch loop: discover -> settle -> hash + claim -> prepare (threads) -> batch -> recognize -> commit -> move.

Hostile inboxes: only regular files are opened, never blocking (files.open_regular); names need
not be UTF-8; a file still open for writing is not taken; an empty file waits `empty_grace`; a
failed file that changes later is re-queued; a file that cannot be read is failed after
`read_tries`. After a crash, the files that were in flight are retried one at a time, so the
file that kills the daemon is found and failed, and the others are never blamed.

One thread owns the ledger, the output and the recognizer (this loop); worker threads only run
`prepare_file` (ingest, align, segment), a pure function of the file. Batches of pages from several
files go through the recognizer together; a batch is flushed when it is full, when its oldest file
has waited `latency` seconds, when nothing else is coming, or at shutdown.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from formreader.align import Aligner
from formreader.pipeline import (
    PipelineSettings,
    PreparedPage,
    finish_pages,
    prepare_file,
)
from formreader.recognize.predictor import Predictor
from formreader.records import PageRecord
from formreader.template import Template
from formreader.watch import memory
from formreader.watch.files import (
    Interrupted,
    NotRegularFile,
    content_hash,
    display,
    error_file,
    is_candidate,
    list_inbox,
    move_file,
    not_regular,
    open_for_writing,
    unique_dest,
    write_error,
)
from formreader.watch.ledger import Claim, Entry, Ledger, Outcome
from formreader.watch.locks import output_lock, state_lock
from formreader.watch.sink import RowSink, check_output
from formreader.watch.stability import Signature, StabilityTracker
from formreader.watch.workers import Workers

log = logging.getLogger("formreader.watch")
RETRY_WRITE_S = 10.0
REQUEUE_EVERY_S = 2.0  # how often failed/ files are checked for late writes (one stat each)


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
    max_attempts: int = 5  # a file that crashed the daemon this many times, processed alone, is failed
    empty_grace: float = 60.0  # an empty file waits this long for its writer before it is failed
    stop_grace: float = 10.0  # first signal: files still being read after this long are left for the next start
    read_tries: int = 3  # a file that cannot be opened (permissions) is failed after this many tries
    workers: int = 2
    once: bool = False  # exit when the inbox is empty and nothing is in flight (cron, tests)
    fault_pause: float = 0.0  # crash tests only: widen the append / commit / move windows so kills land there
    fault_crash_on: str = ""  # crash tests only: kill -9 ourselves when preparing a file whose name contains this

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
    requeued: int = 0  # failed files that changed afterwards and went back to the inbox
    skipped: int = 0  # FIFOs, devices, sockets, symlinks left alone
    abandoned: int = 0  # files left mid-read by a stop (their worker thread may still be running)
    busy_seconds: float = 0.0


@dataclass
class _Job:
    """A claimed file on its way through the pipeline."""

    path: Path
    digest: str
    signature: Signature
    claimed: float
    solo: bool = False  # processed in isolation after a crash
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
        self._tracker = StabilityTracker(settings.settle, settings.empty_grace)
        self._jobs: dict[str, _Job] = {}  # digest -> job, claimed and not yet committed
        self._busy: dict[Path, str] = {}  # path -> digest in flight under another name
        self._stuck: dict[Path, Signature | None] = {}  # left alone until they change (e.g. move refused)
        self._skipped: dict[Path, Signature | None] = {}  # not regular files, logged once
        self._writing: set[Path] = set()  # stable but still open for writing, logged once
        self._unreadable: dict[Path, int] = {}  # tries so far of files that cannot be opened
        self._suspects: set[Path] = set()  # in flight when the last run died: retried one at a time
        self._stopping_since: float | None = None
        self._local = threading.local()  # one Aligner per worker thread: OpenCV objects are not shared
        self._inbox = settings.inbox.resolve()

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> WatchStats:
        check_output(self.s.out)
        for folder in (self.s.inbox, self.s.state, self.s.done, self.s.failed, self.s.out.parent):
            Path(folder).mkdir(parents=True, exist_ok=True)
        memory.limit_arenas()  # before the worker threads start: they would each grow an arena
        with state_lock(self.s.state), output_lock(self.s.out, self.s.state):
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
        suspects = self.ledger.blame_crash()
        self._suspects = {Path(e.path) for e in suspects}
        if suspects:
            log.warning("%d file(s) were in flight when the last run died: retrying them one at a time, "
                        "to find the one that crashed it", len(suspects))
        log.info("watching %s -> %s (%s, settle %.1fs, latency %.1fs)", display(self.s.inbox), display(self.s.out),
                 f"polling every {self.s.poll:g}s" if self.s.poll else "filesystem events", self.s.settle, self.s.latency)

    def _loop(self) -> None:
        observer = self._observer()
        # Without events, the listing is the only way to see new files: do it often.
        rescan = self.s.rescan if observer is not None else min(self.s.rescan, self.s.poll or 2.0)
        pool = Workers(self.s.workers)
        next_rescan = next_requeue = 0.0
        try:
            while not self.abort.is_set():
                now = time.monotonic()
                if now >= next_rescan:
                    for path in list_inbox(self.s.inbox, regular_only=False):
                        self._events.put(path)
                    next_rescan = now + rescan
                if now >= next_requeue and not self.stop.is_set():
                    self._requeue_changed_failures()
                    next_requeue = now + REQUEUE_EVERY_S
                if not self.stop.is_set():
                    self._discover(now, pool)
                else:
                    self._stopping(now)
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
            pool.shutdown()  # never waits: a file still being read is abandoned, see _abandon
            if observer is not None:
                observer.join(timeout=5)
        if self._jobs:
            self._abandon(list(self._jobs.values()), "the daemon was stopped")
        log.info("stopped: %d done, %d failed, %d duplicate(s), %d pages", self.stats.done, self.stats.failed,
                 self.stats.duplicates, self.stats.pages)

    def _stopping(self, now: float) -> None:
        """First signal: no new claims; files still being read after `stop_grace` seconds are left for later."""
        if self._stopping_since is None:
            self._stopping_since = now
        if now - self._stopping_since >= self.s.stop_grace:
            reading = [j for j in self._jobs.values() if j.future is not None]
            if reading:
                self._abandon(reading, f"still being read {self.s.stop_grace:g}s after the stop signal")

    def _abandon(self, jobs: list[_Job], why: str) -> None:
        """Uncommitted files go back to 'never seen': no row was written for them, and a clean stop
        is not a crash, so they are neither blamed nor suspected at the next start (a file already
        blamed for earlier crashes keeps that count)."""
        for job in jobs:
            if job.future is not None and not job.future.done():
                self.stats.abandoned += 1
            self.ledger.release(job.digest, keep_blame=True)
            self._jobs.pop(job.digest, None)
            log.warning("%s: left in the inbox (%s); it is read at the next start", display(job.path.name), why)

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
    def _discover(self, now: float, pool: Workers) -> None:
        while not self._events.empty():
            path = self._events.get()
            if path.parent.resolve() != self._inbox or not is_candidate(path) or self._in_flight(path):
                continue
            if path in self._stuck and self._stuck[path] == Signature.of(path):
                continue
            self._stuck.pop(path, None)
            if self._skip_if_not_regular(path):
                continue
            self._tracker.observe(path, now)
        self._retry_busy()
        stable = []
        for path in self._tracker.tracked():
            sig = self._tracker.observe(path, now)
            if sig is not None:
                stable.append((path, sig))
        stable.sort(key=lambda item: item[0] not in self._suspects)  # suspects first
        for path, sig in stable:
            if path in self._suspects:
                if not self._jobs:  # a suspect's turn: alone, so that a crash now is its own
                    self._suspects.discard(path)
                    self._take(path, sig, pool, now, solo=True)
                return  # nothing else is claimed while a suspect waits for, or has, its turn
            if any(j.solo for j in self._jobs.values()) or len(self._jobs) >= self._capacity():
                return  # isolation, or back-pressure: the rest stay stable in the tracker and are claimed later
            self._take(path, sig, pool, now)

    def _skip_if_not_regular(self, path: Path) -> bool:
        """FIFOs, devices, sockets and symlinks are never opened (a FIFO blocks, /dev/zero never ends)."""
        what = not_regular(path)
        if what is None:
            self._skipped.pop(path, None)
            return False
        sig = Signature.of(path)
        if self._skipped.get(path, "unseen") != sig:
            self._skipped[path] = sig
            self.stats.skipped += 1
            log.warning("%s: %s, not a regular file: left alone", display(path.name), what)
        self._tracker.forget(path)
        self._suspects.discard(path)
        return True

    def _take(self, path: Path, sig: Signature, pool: Workers, now: float, solo: bool = False) -> None:
        """Claim a stable file unless its writer (on this machine) still holds it open."""
        if open_for_writing(path):
            if path not in self._writing:
                self._writing.add(path)
                log.info("%s: unchanged for %.0fs but still open for writing by another process: waiting",
                         display(path.name), self.s.settle)
            self._tracker.hold(path, now)
            if solo:
                self._suspects.add(path)
            return
        self._writing.discard(path)
        self._tracker.forget(path)
        self._claim(path, sig, pool, solo)

    def _capacity(self) -> int:
        return max(4, 2 * self.s.workers, self.predictor.batch_size // 2)

    def _in_flight(self, path: Path) -> bool:
        return path in self._busy or any(j.path == path for j in self._jobs.values())

    def _claim(self, path: Path, sig: Signature, pool: Workers, solo: bool = False) -> None:
        try:
            digest = content_hash(path, stopping=self.stop.is_set)
        except Interrupted:
            self._tracker.observe(path, time.monotonic())
            return
        except NotRegularFile:  # swapped for a FIFO or a symlink since the listing
            self._skip_if_not_regular(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            self._cannot_read(path, sig, exc, pool)
            return
        self._unreadable.pop(path, None)
        if Signature.of(path) != sig:  # written to while we hashed it: settle again
            self._tracker.observe(path, time.monotonic())
            if solo:
                self._suspects.add(path)
            return
        claim, entry = self.ledger.claim(digest, path, sig.size, set(self._jobs), solo)
        if claim is Claim.BUSY:
            self._busy[path] = digest
        elif claim is Claim.DUPLICATE:
            self._duplicate(path, digest, entry)
        else:
            self._start_job(_Job(path, digest, sig, time.monotonic(), solo), claim, entry, pool)

    def _start_job(self, job: _Job, claim: Claim, entry: Entry | None, pool: Workers) -> None:
        self._jobs[job.digest] = job
        name = display(job.path.name)
        if claim is Claim.RETRY:
            self.stats.retried += 1
            assert entry is not None
            if entry.crashes >= self.s.max_attempts:
                self._ready(job, f"gave up: the daemon died {entry.crashes} times while reading this file alone "
                                 "(out of memory? a crash in a decoder?)")
                return
            log.info("%s: retrying%s (the run that claimed it died before committing it; %d crash(es) blamed on it)",
                     name, " alone" if job.solo else "", entry.crashes)
        log.info("%s: claimed (sha256 %s, %d bytes)", name, job.digest[:12], job.signature.size)
        job.future = pool.submit(self._prepare, job.path)
        job.future.add_done_callback(lambda _: self._wake.set())  # harvest without waiting a tick

    def _ready(self, job: _Job, error: str) -> None:
        job.pages = [_error_page(job.path, error)]
        job.ready = time.monotonic()

    def _cannot_read(self, path: Path, sig: Signature, exc: OSError, pool: Workers) -> None:
        """No read permission (or an I/O error): tried `read_tries` times, `settle` apart, then failed."""
        tries = self._unreadable[path] = self._unreadable.get(path, 0) + 1
        cause = f"cannot read the file ({exc.strerror or exc})"
        if tries < self.s.read_tries:
            log.warning("%s: %s; try %d of %d", display(path.name), cause, tries, self.s.read_tries)
            self._tracker.observe(path, time.monotonic())
            return
        del self._unreadable[path]
        # No content, so no content hash: the identity is this name and its stat signature.
        digest = hashlib.sha256(os.fsencode(f"unreadable\0{path}\0{sig.size}\0{sig.mtime_ns}\0{sig.inode}")).hexdigest()
        claim, entry = self.ledger.claim(digest, path, sig.size, set(self._jobs))
        if claim in (Claim.NEW, Claim.RETRY):
            job = _Job(path, digest, sig, time.monotonic())
            self._jobs[digest] = job
            self._ready(job, f"{cause} after {tries} tries")
        elif claim is Claim.DUPLICATE:
            self._duplicate(path, digest, entry)

    def _retry_busy(self) -> None:
        """A file whose content was in flight under another name: once that one commits, it is a duplicate."""
        for path, digest in list(self._busy.items()):
            if digest in self._jobs:
                continue
            del self._busy[path]
            if path.exists():
                self._tracker.observe(path, time.monotonic())

    def _prepare(self, path: Path) -> list[PreparedPage]:
        if self.s.fault_crash_on and self.s.fault_crash_on in path.name:
            os.kill(os.getpid(), signal.SIGKILL)  # crash tests: a file that kills the process (think OOM killer)
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
                    log.exception("%s: processing raised", display(job.path.name))
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
                page.record.file = display(outcome.dest)  # where the file now lives, as UTF-8 text
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
        moved, sigs = [], {}
        for job, outcome in zip(jobs, outcomes):
            del self._jobs[job.digest]
            if self._settle_file(job.path, outcome.hash, outcome.status, Path(outcome.dest), job.pages):
                moved.append(job.digest)
                if outcome.status == "failed":
                    sigs[job.digest] = _sig_text(Signature.of(Path(outcome.dest)))
        if moved:
            self.ledger.mark_moved(*moved, sigs=sigs)  # one transaction per batch; a crash before it only re-moves nothing
        if not self._jobs:
            memory.release()  # idle: hand the pages of big files back to the system

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
        log.warning("%s: changed or vanished while being processed; reading it again when it settles", display(job.path.name))
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
            log.error("%s: committed but cannot move to %s (%s); will retry", display(src.name), display(dest), exc)
            self._stuck[src] = Signature.of(src)
            return False
        n = len(pages)
        self.stats.pages += n
        if status == "failed":
            self.stats.failed += 1
            log.warning("%s: FAILED (%s) -> %s", display(src.name), pages[0].record.error if n == 1 else f"{n} pages unreadable", display(dest))
        else:
            self.stats.done += 1
            review = sum(p.record.needs_review for p in pages)
            log.info("%s: done, %d page(s), %d to review -> %s", display(src.name), n, review, display(dest))
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
            log.error("%s: duplicate, but cannot move it to %s (%s)", display(path.name), display(dest), exc)
            self._stuck[path] = Signature.of(path)
            return
        self.ledger.record_duplicate(path, digest, dest)
        self.stats.duplicates += 1
        log.info("%s: duplicate of %s (already %s), no new rows -> %s", display(path.name), display(Path(entry.dest).name),
                 entry.status, display(dest))

    def _forget_vanished(self) -> None:
        """Claims of a previous run whose file left the inbox before its rows were written."""
        for entry in self.ledger.in_flight():
            if not Path(entry.path).exists():
                log.warning("%s: was being processed when the daemon stopped and is no longer in the inbox; "
                            "if it comes back (under any name) it is processed then", display(Path(entry.path).name))
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
                log.info("%s: committed before the last stop, moved now -> %s", display(src.name), display(dest))
            sig = _sig_text(Signature.of(dest)) if entry.status == "failed" else ""
            self.ledger.mark_moved(entry.hash, sigs={entry.hash: sig})
        except OSError as exc:
            log.error("%s: cannot move to %s (%s)", display(src.name), display(dest), exc)
            self._stuck[src] = Signature.of(src)


    def _requeue_changed_failures(self) -> None:
        """A failed file that changes in failed/ was still being written (a 0-byte file whose writer
        woke up, a copy from a share that resumed): back to the inbox, to be read as new content."""
        for entry in self.ledger.watched_failures():
            dest = Path(entry.dest)
            sig = Signature.of(dest)
            if sig is None or not_regular(dest):  # the operator took it away: stop watching
                self.ledger.unwatch(entry.hash)
                continue
            if _sig_text(sig) == entry.dest_sig:
                continue
            target = unique_dest(self.s.inbox, Path(entry.path).name, entry.hash, set())
            try:
                move_file(dest, target)
                error_file(dest).unlink(missing_ok=True)
            except OSError as exc:
                log.error("%s: changed in failed/ but cannot go back to the inbox (%s)", display(dest.name), exc)
                continue
            self.ledger.unwatch(entry.hash)
            self.stats.requeued += 1
            log.warning("%s: changed after it was failed (%d -> %d bytes; a writer was still at work): "
                        "back in the inbox as %s, to be read again", display(dest.name), entry.size, sig.size,
                        display(target.name))


def _sig_text(sig: Signature | None) -> str:
    return f"{sig.size}:{sig.mtime_ns}" if sig else ""


def _error_page(path: Path, message: str) -> PreparedPage:
    return PreparedPage(PageRecord(file=str(path), page=1, error=message))
