"""kill -9 the real `formreader watch` process at random moments, restart it, and count rows.

Whatever instant the kill lands on (start-up, settling, reading, recognizing, appending, committing,
moving), the final output must hold every page of every file exactly once, and every input must
end in done/ or failed/.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from formreader.watch.ledger import Ledger
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
    watch_command,
)


@pytest.fixture(scope="module")
def maker(tmp_path_factory) -> FormMaker:
    return FormMaker(small_template(tmp_path_factory.mktemp("tpl") / "fiche-a-100dpi"))


def _deliver(inbox: Path, wave: list[tuple[str, bytes]], rng: random.Random) -> None:
    for name, data in wave:
        if rng.random() < 0.2:
            slow_copy(inbox, name, data, chunks=4, pause=0.1)
        else:
            drop(inbox, name, data)
        time.sleep(rng.uniform(0.0, 0.15))


def test_repeated_kill_9_loses_nothing_and_duplicates_nothing(tmp_path, maker, tiny_model):
    seed = int(os.environ.get("FORMREADER_CRASH_SEED", "20261121"))
    rounds = int(os.environ.get("FORMREADER_CRASH_ROUNDS", "10"))
    rng = random.Random(seed)
    inbox, out, log = tmp_path / "inbox", tmp_path / "rows.jsonl", tmp_path / "daemon.log"
    inbox.mkdir()
    expected: dict[str, int] = {}
    files: list[tuple[str, bytes]] = []
    for n in range(1000, 1000 + 7 * rounds):
        name, data, pages = maker.make(n)
        files.append((name, data))
        expected[name] = pages
    for name, (data, _) in bad_files(maker).items():
        files.insert(rng.randrange(len(files)), (name, data))
        expected[name] = 1
    waves = [files[i::rounds] for i in range(rounds)]
    template_dir = maker.template_dir
    cmd = watch_command(inbox, out, template_dir, tiny_model, "--settle", "0.3", "--latency", "0.3", "--empty-grace", "0.5",
                        "--max-attempts", "1000", "--fault-pause", "0.15")
    kills, torn = 0, 0
    for wave in waves:
        dropper = threading.Thread(target=_deliver, args=(inbox, wave, rng))
        dropper.start()
        proc = start_daemon(cmd, log)
        time.sleep(rng.uniform(0.8, 3.0))  # start-up takes about 1 s: kills land in every phase
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        data = out.read_bytes() if out.exists() else b""
        torn += bool(data) and not data.endswith(b"\n")
        dropper.join()
    # A last, uninterrupted run drains the inbox and exits.
    proc = start_daemon([*cmd, "--once"], log)
    assert proc.wait(timeout=180) == 0, log.read_text()[-3000:]

    rows = read_rows(out)
    counts = Counter(row_keys(rows))
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    want = Counter((name, p) for name, pages in expected.items() for p in range(1, pages + 1))
    text = log.read_text()
    print(f"\ncrash test (seed {seed}): {kills} kills, {len(expected)} files, {sum(want.values())} pages expected, "
          f"{len(rows)} rows, {duplicates} duplicates, {len(want - counts)} missing, {torn} torn tails seen after a kill, "
          f"{text.count('cutting')} uncommitted tails cut at restart, {text.count('retrying')} files retried")
    assert duplicates == 0
    assert counts == want
    assert settled_names(inbox) == set(expected)
    assert not [p for p in inbox.iterdir() if p.is_file()]
    ledger = Ledger(inbox / ".formreader", read_only=True)
    assert ledger.counts()["processing"] == 0
    ledger.close()
