"""`formreader watch` in-process: many drops and slow copies, failures with reasons, duplicates, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from formreader.cli import app
from formreader.recognize.predictor import RecognizerSettings, load_predictor
from formreader.records import PageRecord
from formreader.template import Template
from formreader.watch.daemon import WatchDaemon, WatchSettings
from formreader.watch.files import content_hash
from formreader.watch.ledger import Claim, Ledger, Outcome
from formreader.watch.sink import RowSink
from formreader.watch.stability import StabilityTracker
from formreader.watch.status import read_status
from tests.watch_helpers import (
    FormMaker,
    bad_files,
    drop,
    read_rows,
    row_keys,
    settled_names,
    slow_copy,
    small_template,
    start_daemon,
    wait_for,
    watch_command,
)

FAST = {"settle": 0.4, "latency": 0.5, "tick": 0.05, "rescan": 2.0, "workers": 2, "empty_grace": 0.5}


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory) -> Path:
    return small_template(tmp_path_factory.mktemp("tpl") / "fiche-a-100dpi")


@pytest.fixture(scope="module")
def maker(template_dir) -> FormMaker:
    return FormMaker(template_dir)


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return load_predictor(tiny_model, RecognizerSettings(device="cpu", threads=1, batch_size=32))


class Running:
    """The daemon in a background thread of this process, stopped like SIGTERM would stop it."""

    def __init__(self, settings: WatchSettings, template_dir: Path, predictor):
        self.stop = threading.Event()
        self.daemon = WatchDaemon(settings, Template.load(template_dir), predictor, stop=self.stop)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.stats = self.daemon.run()
        except BaseException as exc:  # surfaced in the test thread
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "daemon did not stop"
        if self.error:
            raise self.error


def _settings(tmp_path: Path, out: str = "rows.jsonl", **kw) -> WatchSettings:
    return WatchSettings.for_inbox(tmp_path / "inbox", tmp_path / out, **{**FAST, **kw})


def test_many_drops_and_slow_copies_give_one_row_per_page(tmp_path, template_dir, maker, predictor):
    settings = _settings(tmp_path)
    inbox = settings.inbox
    inbox.mkdir()
    expected: dict[str, int] = {}
    for n in range(8):  # already waiting when the daemon starts
        name, data, pages = maker.make(n)
        drop(inbox, name, data)
        expected[name] = pages
    slow_threads = []
    with Running(settings, template_dir, predictor):
        for n in range(8, 110):
            name, data, pages = maker.make(n)
            expected[name] = pages
            if n % 12 == 0:  # slow copies, concurrent with everything else: pauses shorter than settle
                t = threading.Thread(target=slow_copy, args=(inbox, name, data, 6, 0.15))
                t.start()
                slow_threads.append(t)
            else:
                drop(inbox, name, data)
            time.sleep(0.01)
        for t in slow_threads:
            t.join()
        assert wait_for(lambda: settled_names(inbox) >= set(expected), timeout=120), "files left in the inbox"
    rows = read_rows(settings.out)
    keys = row_keys(rows)
    want = sorted((name, p) for name, pages in expected.items() for p in range(1, pages + 1))
    assert sorted(keys) == want  # every page once: no loss, no duplicate
    assert len(want) >= 110
    assert all(not r["error"] for r in rows), [r for r in rows if r["error"]][:3]  # slow copies never read half-written
    assert set(os.listdir(inbox / "done")) == set(expected)
    assert not [p for p in inbox.iterdir() if p.is_file()]


def test_unreadable_and_non_form_files_fail_with_reasons_while_good_files_go_on(tmp_path, template_dir, maker, predictor):
    settings = _settings(tmp_path, "rows.csv", once=True)
    inbox = settings.inbox
    inbox.mkdir()
    bad = bad_files(maker)
    for name, (data, _) in bad.items():
        drop(inbox, name, data)
    good = [maker.make(n) for n in (200, 201, 209)]
    for name, data, _ in good:
        drop(inbox, name, data)
    stats = WatchDaemon(settings, Template.load(template_dir), predictor).run()
    assert (stats.done, stats.failed) == (len(good), len(bad))
    assert sorted(os.listdir(inbox / "done")) == sorted(name for name, _, _ in good)
    for name, (_, word) in bad.items():
        assert (inbox / "failed" / name).read_bytes() == data_of(bad, name)  # moved, never deleted or altered
        reason = (inbox / "failed" / f"{name}.error.txt").read_text()
        assert word.lower() in reason.lower(), (name, reason)
    rows = read_rows(settings.out)
    assert sorted(row_keys(rows)) == sorted([(n, 1) for n in bad] + [(n, p) for n, _, pages in good for p in range(1, pages + 1)])
    failed_rows = {Path(r["file"]).name: r for r in rows if r["error"]}
    assert set(failed_rows) == set(bad)  # unreadable files keep a row carrying the reason, as `scan` does


def data_of(bad: dict, name: str) -> bytes:
    return bad[name][0]


def test_duplicate_drops_are_processed_once(tmp_path, template_dir, maker, predictor):
    settings = _settings(tmp_path)
    inbox = settings.inbox
    inbox.mkdir()
    name, data, _ = maker.make(300)
    with Running(settings, template_dir, predictor) as running:
        drop(inbox, name, data)
        drop(inbox, "renamed-copy.png", data)  # same content, other name, at the same time
        assert wait_for(lambda: len(settled_names(inbox)) == 2, timeout=30)
        drop(inbox, name, data)  # the very same file dropped again later, same name
        assert wait_for(lambda: len(settled_names(inbox)) == 3, timeout=30)
    assert len(read_rows(settings.out)) == 1
    assert len(os.listdir(inbox / "done")) == 3  # all kept: input is never deleted
    assert running.stats.duplicates == 2
    assert read_status(settings.state).counts["duplicates"] == 2


def test_restart_cuts_rows_that_were_never_committed(tmp_path):
    """Crash after the append and before the ledger commit (and a torn last line): the tail is cut."""
    names = ["NOM"]
    ledger = Ledger(tmp_path / "state")
    out = tmp_path / "rows.jsonl"
    sink = RowSink(out, names)
    sink.open(ledger.committed_length(out))
    assert ledger.claim("h1", tmp_path / "a.png", 1, set())[0] is Claim.NEW
    length = sink.append([PageRecord(file="a.png", page=1)])
    ledger.commit([Outcome("h1", "done", 1, "", "done/a.png", 0.1)], out, length)
    sink.append([PageRecord(file="b.png", page=1), PageRecord(file="b.png", page=2)])  # never committed
    with open(out, "ab") as fh:
        fh.write(b'{"file": "b.png", "pa')  # torn write
    assert RowSink(out, names).open(ledger.committed_length(out)) == length
    assert row_keys(read_rows(out)) == [("a.png", 1)]
    # The uncommitted file is retried, the committed one is a duplicate.
    assert ledger.claim("h1", tmp_path / "a.png", 1, set())[0] is Claim.DUPLICATE
    ledger.claim("h2", tmp_path / "b.png", 1, set())
    assert ledger.claim("h2", tmp_path / "b.png", 1, set())[0] is Claim.RETRY
    assert ledger.claim("h2", tmp_path / "b.png", 1, {"h2"})[0] is Claim.BUSY


def test_csv_output_keeps_one_header_across_restarts(tmp_path):
    out = tmp_path / "rows.csv"
    for n in range(3):
        sink = RowSink(out, ["NOM"])
        sink.open(None if n == 0 else out.stat().st_size)
        sink.append([PageRecord(file=f"f{n}.png", page=1)])
    lines = out.read_text().splitlines()
    assert lines[0].startswith("file,page,NOM") and len(lines) == 4
    assert row_keys(read_rows(out)) == [("f0.png", 1), ("f1.png", 1), ("f2.png", 1)]


def test_stability_waits_for_size_and_mtime_to_settle(tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"x")
    tracker = StabilityTracker(settle=1.0)
    assert tracker.observe(path, 0.0) is None
    assert tracker.observe(path, 0.5) is None
    with open(path, "ab") as fh:  # the copy goes on
        fh.write(b"yy")
    assert tracker.observe(path, 1.2) is None  # changed: the clock restarts
    assert tracker.observe(path, 2.0) is None
    assert tracker.observe(path, 2.3).size == 3
    path.unlink()
    assert tracker.observe(path, 3.0) is None and len(tracker) == 0


def test_lone_file_is_not_held_back_for_a_batch(tmp_path, template_dir, maker, predictor):
    settings = _settings(tmp_path, latency=0.5)
    settings.inbox.mkdir()
    with Running(settings, template_dir, predictor):
        time.sleep(0.3)
        name, data, _ = maker.make(400)
        t0 = time.monotonic()
        drop(settings.inbox, name, data)
        assert wait_for(lambda: read_rows(settings.out), timeout=20)
        elapsed = time.monotonic() - t0
    assert elapsed < settings.settle + settings.latency + 4.0, elapsed  # loaded CI machines


def test_cli_sigterm_finishes_in_flight_work_and_status_reports(tmp_path, template_dir, maker, tiny_model):
    inbox, out = tmp_path / "inbox", tmp_path / "rows.jsonl"
    inbox.mkdir()
    expected = {}
    for n in range(500, 512):
        name, data, pages = maker.make(n)
        drop(inbox, name, data)
        expected[name] = pages
    cmd = watch_command(inbox, out, template_dir, tiny_model, "--settle", "0.3", "--latency", "0.5")
    proc = start_daemon(cmd, tmp_path / "daemon.log")
    assert wait_for(lambda: "claimed" in (tmp_path / "daemon.log").read_text(), timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "finishing files in flight" in log
    # Everything claimed before the signal was committed and moved; the rest waits in the inbox.
    state = inbox / ".formreader"
    ledger = Ledger(state, read_only=True)
    assert ledger.counts()["processing"] == 0
    ledger.close()
    result = CliRunner().invoke(app, ["watch", "--status", "--state", str(state)])
    assert result.exit_code == 0, result.output
    for word in ("done", "failed", "pending", "throughput", "not running"):
        assert word in result.output
    # A restart picks up the rest; a second daemon on the same state is refused.
    proc = start_daemon(cmd, tmp_path / "daemon.log")
    assert wait_for(lambda: "watching" in (tmp_path / "daemon.log").read_text().split("stopped:")[-1], timeout=30)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2 and "another watch daemon" in second.stderr
    assert wait_for(lambda: settled_names(inbox) >= set(expected), timeout=60)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert sorted(row_keys(read_rows(out))) == sorted((n, p) for n, k in expected.items() for p in range(1, k + 1))


def test_cli_refuses_bad_usage(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["watch", str(tmp_path), "--out", str(tmp_path / "rows.json")])
    assert result.exit_code == 2 and ".jsonl" in result.output
    assert runner.invoke(app, ["watch", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, ["watch", "--status", "--state", str(tmp_path / "nothing")]).exit_code == 2


def test_restart_finishes_moves_and_forgets_vanished_claims(tmp_path, template_dir, maker, predictor):
    """Crash after the ledger commit but before the move; and a claimed file deleted while the daemon was down."""
    settings = _settings(tmp_path, once=True)
    inbox = settings.inbox
    inbox.mkdir()
    name, data, _ = maker.make(600)
    src = drop(inbox, name, data)
    ledger = Ledger(settings.state)
    sink = RowSink(settings.out, Template.load(template_dir).layout.field_names)
    sink.open(None)
    digest = content_hash(src)
    ledger.claim(digest, src, len(data), set())
    dest = settings.done / name
    length = sink.append([PageRecord(file=str(dest), page=1)])
    ledger.commit([Outcome(digest, "done", 1, "", str(dest), 0.1)], settings.out, length)
    ledger.claim("0" * 64, inbox / "gone.png", 10, set())  # claimed, then deleted by someone
    ledger.close()
    stats = WatchDaemon(settings, Template.load(template_dir), predictor).run()
    assert dest.read_bytes() == data and not src.exists()
    assert (stats.done, stats.pages) == (0, 0)  # no second processing, no second row
    assert row_keys(read_rows(settings.out)) == [(name, 1)]
    assert read_status(settings.state).counts["processing"] == 0


def test_polling_mode_sees_new_files_without_events(tmp_path, template_dir, maker, predictor):
    settings = _settings(tmp_path, poll=0.2, rescan=60.0)  # the PollingObserver alone must find them
    settings.inbox.mkdir()
    names = []
    with Running(settings, template_dir, predictor):
        time.sleep(0.3)
        for n in range(700, 703):
            name, data, _ = maker.make(n)
            slow_copy(settings.inbox, name, data, chunks=3, pause=0.1)
            names.append(name)
        assert wait_for(lambda: settled_names(settings.inbox) == set(names), timeout=30)
    assert sorted(row_keys(read_rows(settings.out))) == sorted((n, 1) for n in names)


def test_a_stop_keeps_the_blame_of_earlier_crashes_and_adds_none(tmp_path):
    ledger = Ledger(tmp_path / "state")
    ledger.claim("innocent", tmp_path / "a.png", 1, set(), solo=True)
    ledger.claim("culprit", tmp_path / "b.png", 1, set(), solo=True)
    ledger.blame_crash()  # both were read alone when the daemon died: one crash each
    ledger.release("innocent")  # e.g. the file changed: forgotten
    ledger.release("culprit", keep_blame=True)  # left behind at a stop: still a suspect, no new blame
    ledger.blame_crash()
    assert ledger.get("innocent") is None
    culprit = ledger.get("culprit")
    assert (culprit.status, culprit.crashes, culprit.solo) == ("processing", 1, False)
