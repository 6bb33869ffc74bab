"""The real `formreader watch` process against hostile or careless inboxes (issue 15's table).

Each test starts the daemon as a subprocess, as an operator would, and checks what happens to
non-UTF-8 names, FIFOs, devices, sockets and symlinks, writers that keep a file open, empty
files, crashes, unreadable files, a second daemon on the same output and signals with a long PDF
in flight.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from formreader.watch.ledger import Ledger
from tests.watch_helpers import (
    FormMaker,
    drop,
    long_pdf,
    read_rows,
    settled_names,
    small_template,
    start_daemon,
    wait_for,
    watch_command,
)

FAST = ("--settle", "0.3", "--latency", "0.3")


@pytest.fixture(scope="module")
def maker(tmp_path_factory) -> FormMaker:
    return FormMaker(small_template(tmp_path_factory.mktemp("tpl") / "fiche-a-100dpi"))


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _stop(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=timeout)
    return rc, time.monotonic() - t0


def _processing(state: Path) -> int:
    ledger = Ledger(state, read_only=True)
    try:
        return ledger.counts()["processing"]
    finally:
        ledger.close()


def test_fifos_devices_sockets_symlinks_and_any_name(tmp_path, maker, tiny_model):
    inbox, out, log = tmp_path / "inbox", tmp_path / "rows.jsonl", tmp_path / "daemon.log"
    inbox.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(maker.image_bytes(1))
    # Already there at start (the listing path)...
    raw_name = os.fsdecode(b"scan-\xff\xfe-\xe9t\xe9.png")  # Latin-1 bytes: not UTF-8
    (inbox / raw_name).write_bytes(maker.image_bytes(2))
    os.mkfifo(inbox / "pipe.pdf")
    os.symlink("/dev/zero", inbox / "zero.pdf")
    os.symlink(outside, inbox / "outside.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "socket.png"))
    cmd = watch_command(inbox, out, maker.template_dir, tiny_model, *FAST, "--poll", "0.2")
    proc = start_daemon(cmd, log)
    try:
        assert wait_for(lambda: "watching" in _log(log), timeout=60), _log(log)
        # ...and dropped while it runs (the event path): a FIFO, then a good file behind it.
        os.mkfifo(inbox / "late-pipe.png")
        drop(inbox, "after.png", maker.image_bytes(3))
        assert wait_for(lambda: settled_names(inbox) >= {raw_name, "after.png"}, timeout=60), _log(log)
        # A second daemon on the same output, with its own state folder, is refused.
        second = subprocess.run([*cmd, "--state", str(tmp_path / "other-state")], capture_output=True, timeout=120,
                                env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
        message = " ".join(second.stderr.decode(errors="replace").split())
        assert second.returncode == 2 and "another watch daemon" in message and "rows.jsonl" in message, message
        time.sleep(1.0)  # several listings (every 0.2 s) of the entries it must leave alone
    finally:
        rc, seconds = _stop(proc)
        sock.close()
    assert rc == 0 and seconds < 10, (rc, seconds)
    text = _log(log)
    for name, what in (("pipe.pdf", "FIFO"), ("late-pipe.png", "FIFO"), ("zero.pdf", "symbolic link"),
                       ("outside.png", "symbolic link"), ("socket.png", "socket")):
        lines = [line for line in text.splitlines() if line.split(" ", 3)[-1].startswith(name)]
        assert len(lines) == 1 and what in lines[0], (name, lines)  # one log line each
        assert os.path.lexists(inbox / name)  # left alone, not moved
    assert (inbox / "done" / raw_name).read_bytes() == maker.image_bytes(2)  # the exact bytes of the name kept
    rows = read_rows(out)
    assert sorted(Path(r["file"]).name for r in rows) == ["after.png", "scan-\\xff\\xfe-\\xe9t\\xe9.png"]
    assert not any(r["error"] for r in rows)
    assert outside.read_bytes() == maker.image_bytes(1)  # the symlink's target never touched


def test_writers_still_at_work_and_empty_files_are_never_lost(tmp_path, maker, tiny_model):
    inbox, out, log = tmp_path / "inbox", tmp_path / "rows.jsonl", tmp_path / "daemon.log"
    inbox.mkdir()
    proc = start_daemon(watch_command(inbox, out, maker.template_dir, tiny_model, *FAST, "--empty-grace", "2"), log)
    pdf = maker.pdf_bytes(7, pages=2)
    try:
        assert wait_for(lambda: "watching" in _log(log), timeout=60), _log(log)
        # A scanner that creates the name, stays silent longer than --settle, writes half, stalls
        # again with the file open, then finishes: taken only after it closes, read whole.
        with open(inbox / "slow.pdf", "wb") as fh:
            time.sleep(1.0)
            fh.write(pdf[: len(pdf) // 2])
            fh.flush()
            time.sleep(1.5)
            assert "slow.pdf" not in settled_names(inbox)
            fh.write(pdf[len(pdf) // 2 :])
        # An empty file nobody holds open: failed once --empty-grace is over...
        (inbox / "later.png").touch()
        assert wait_for(lambda: (inbox / "failed" / "later.png").exists(), timeout=30), _log(log)
        assert "empty" in (inbox / "failed" / "later.png.error.txt").read_text()
        # ...and when its writer (on another machine, say) fills it in failed/, it is read again.
        (inbox / "failed" / "later.png").write_bytes(maker.image_bytes(8))
        assert wait_for(lambda: (inbox / "done" / "later.png").exists(), timeout=60), _log(log)
        assert wait_for(lambda: (inbox / "done" / "slow.pdf").exists(), timeout=30), _log(log)
    finally:
        rc, _ = _stop(proc)
    assert rc == 0
    rows = read_rows(out)
    slow = [r for r in rows if Path(r["file"]).name == "slow.pdf"]
    assert [int(r["page"]) for r in slow] == [1, 2] and not any(r["error"] for r in slow)
    later = [r["error"] for r in rows if Path(r["file"]).name == "later.png"]
    assert len(later) == 2 and "empty" in later[0] and later[1] == ""  # the failed row, then the real one
    text = _log(log)
    assert "still open for writing" in text and "changed after it was failed" in text
    assert not (inbox / "failed" / "slow.pdf").exists()


def test_crashes_are_blamed_on_the_file_that_causes_them(tmp_path, maker, tiny_model):
    """A file that kills the process (think: the OOM killer) among 8 innocent ones, all in flight."""
    inbox, out, log = tmp_path / "inbox", tmp_path / "rows.jsonl", tmp_path / "daemon.log"
    inbox.mkdir()
    innocent = {}
    for n in range(8):
        name, data, pages = maker.make(3000 + n)
        drop(inbox, name, data)
        innocent[name] = pages
    drop(inbox, "bomb.png", maker.image_bytes(3999))
    cmd = watch_command(inbox, out, maker.template_dir, tiny_model, *FAST, "--once", "--max-attempts", "2",
                        "--fault-crash-on", "bomb", "--workers", "4")
    runs = []
    for _ in range(6):
        proc = start_daemon(cmd, log)
        runs.append(proc.wait(timeout=120))
        if runs[-1] == 0:
            break
    print(f"\ncrash blame: exit codes {runs}; {len(innocent)} innocent files, 1 culprit, --max-attempts 2")
    # Crash with everything in flight; culprit alone: crash (blame 1), crash (blame 2); then failed.
    assert runs == [-signal.SIGKILL] * 3 + [0], runs
    assert settled_names(inbox) == set(innocent) | {"bomb.png"}
    assert set(os.listdir(inbox / "done")) == set(innocent)  # every innocent file read, none given up
    assert "gave up" in (inbox / "failed" / "bomb.png.error.txt").read_text()
    rows = read_rows(out)
    assert sorted(Path(r["file"]).name for r in rows if not r["error"]) == sorted(
        n for n, k in innocent.items() for _ in range(k))
    assert [Path(r["file"]).name for r in rows if r["error"]] == ["bomb.png"]
    assert _processing(inbox / ".formreader") == 0


def test_signals_are_honoured_within_seconds_with_a_300_page_pdf_in_flight(tmp_path, maker, tiny_model):
    inbox, out, log = tmp_path / "inbox", tmp_path / "rows.jsonl", tmp_path / "daemon.log"
    inbox.mkdir()
    drop(inbox, "long.pdf", long_pdf(300))
    cmd = watch_command(inbox, out, maker.template_dir, tiny_model, *FAST, "--workers", "1")
    # Two signals: the second stops at once.
    proc = start_daemon(cmd, log)
    assert wait_for(lambda: "long.pdf: claimed" in _log(log), timeout=60), _log(log)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    rc, twice = _stop(proc)
    assert rc == 0 and twice < 5, (rc, twice, _log(log)[-2000:])
    # One signal: files in flight get --stop-grace seconds, then are left for the next start.
    proc = start_daemon([*cmd, "--stop-grace", "1"], log)
    assert wait_for(lambda: _log(log).count("long.pdf: claimed") == 2, timeout=60), _log(log)
    time.sleep(0.5)
    rc, seconds = _stop(proc)
    print(f"\n300-page PDF in flight: exit {twice:.1f} s after the second SIGTERM; "
          f"{seconds:.1f} s after a single SIGTERM with --stop-grace 1")
    assert rc == 0 and seconds < 1 + 5, (rc, seconds)
    assert _log(log).count("long.pdf: left in the inbox") == 2
    assert (inbox / "long.pdf").exists() and not read_rows(out)
    assert _processing(inbox / ".formreader") == 0  # released, not blamed: a stop is not a crash


def _without_dac_override() -> None:
    """In the child, before exec: drop root's power to read any file (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH) from the bounding set, so that file permissions apply to it too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_file_that_cannot_be_read_fails_with_its_cause(tmp_path, maker, tiny_model):
    """No read permission: tried a few times, then a failed row that says why. As root (who reads
    everything), the daemon runs without CAP_DAC_OVERRIDE to meet a real permission error."""
    inbox, out, log = tmp_path / "inbox", tmp_path / "rows.jsonl", tmp_path / "daemon.log"
    inbox.mkdir()
    drop(inbox, "secret.png", maker.image_bytes(11))
    (inbox / "secret.png").chmod(0)
    drop(inbox, "fine.png", maker.image_bytes(12))
    cmd = watch_command(inbox, out, maker.template_dir, tiny_model, "--settle", "0.2", "--latency", "0.2", "--once")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    try:
        with open(log, "wb") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=120, env=env,
                                  preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {exc}")
    text = _log(log)
    assert proc.returncode == 0, text[-3000:]
    assert (inbox / "done" / "fine.png").exists() and (inbox / "failed" / "secret.png").exists()
    assert "Permission denied" in (inbox / "failed" / "secret.png.error.txt").read_text()
    rows = {Path(r["file"]).name: r for r in read_rows(out)}
    assert "Permission denied" in rows["secret.png"]["error"] and rows["fine.png"]["error"] == ""
    assert text.count("secret.png: cannot read the file") == 2  # tries 1 and 2 warned; the 3rd fails it
