"""`scan --resume`: kill -9 a real `formreader scan` at random moments; the same command then
finishes the rest, and the output equals that of an uninterrupted run, byte for byte."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from PIL import Image
from typer.testing import CliRunner

from formreader.cli import app
from formreader.resume import journal_path
from formreader.template import Template
from tests.forms import Scan, fill, scan

PAGES = 13
ROOT = Path(__file__).resolve().parents[1]
VALUES = [{"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"},
          {"NOM": "MARTIN", "PRENOM": "LUC", "DATE": "01/02/1999"}]


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    """8 files, 13 pages: PNG, JPEG, multi-page PDF and TIFF, an unreadable file."""
    root = tmp_path_factory.mktemp("resume-inbox")
    tpl = Template.load()
    pages = [scan(fill(tpl, VALUES[i % 2]), Scan(angle=(i % 5) - 2)) for i in range(6)]
    for i in range(5):
        cv2.imwrite(str(root / f"p{i}.png" if i % 2 else root / f"j{i}.jpg"), pages[i])
    Image.fromarray(pages[0]).save(root / "three.pdf", save_all=True,
                                   append_images=[Image.fromarray(p) for p in pages[1:3]], resolution=200)
    Image.fromarray(pages[3]).save(root / "four.tif", save_all=True, append_images=[Image.fromarray(p) for p in pages[4:6] + pages[:1]])
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    return root


def _command(inbox: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "formreader", "scan", str(inbox), "--out", str(out), "--model", str(model),
            "--resume", "--batch-size", "4", "--workers", "1"]  # one worker: the work lasts long enough to be cut


def _journal_lines(out: Path) -> int:
    try:
        return journal_path(out).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(inbox: Path, tmp_path: Path, tiny_model: Path):
    reference = tmp_path / "reference.csv"
    result = CliRunner().invoke(app, ["scan", str(inbox), "--out", str(reference), "--model", str(tiny_model), "--batch-size", "4"])
    assert result.exit_code == 1, result.output  # broken.pdf: exit 1, its row says why

    out = tmp_path / "resumed.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seed = int(os.environ.get("FORMREADER_RESUME_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    kills, runs, rounds, deadline, at_kill = 0, 0, 0, time.monotonic() + 150, []
    # Rounds: kill and resume until a run finishes, check its output, and start a fresh round while
    # fewer than three kills have landed in all (a fast machine can finish the last pages of a round
    # before the next kill; every kill counted is one whose resumed output was checked).
    while kills < 3 and time.monotonic() < deadline:
        rounds += 1
        out.unlink(missing_ok=True)
        journal_path(out).unlink(missing_ok=True)
        in_round = 0
        while time.monotonic() < deadline:
            runs += 1
            proc = subprocess.Popen(_command(inbox, out, tiny_model), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if in_round < 4:
                # First kill at a random instant (start-up, early pages); later ones a random moment
                # after the run has recorded another file, so kills land in the middle of the work.
                before = _journal_lines(out)
                if in_round == 0:
                    time.sleep(rng.uniform(0.2, 3.0))
                else:
                    while proc.poll() is None and _journal_lines(out) <= before and time.monotonic() < deadline:
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0.0, 0.05))  # soon after: a fast machine finishes 13 pages quickly
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    in_round += 1
                    at_kill.append(max(_journal_lines(out) - 1, 0))
            _, err = proc.communicate(timeout=120)
            if proc.returncode != -signal.SIGKILL:
                break
        assert proc.returncode == 1, err.decode(errors="replace")  # finished: broken.pdf's row, exit 1
        assert out.read_bytes() == reference.read_bytes(), f"seed {seed}, round {rounds}"
        assert not journal_path(out).exists()  # removed once the output holds every row
        kills += in_round
    assert kills >= 3, f"seed {seed}: only {kills} kills landed in {rounds} rounds"
    with open(out, newline="", encoding="utf-8") as fh:
        import csv

        keys = [(Path(r["file"]).name, int(r["page"])) for r in csv.DictReader(fh)]
    assert len(keys) == len(set(keys)) == PAGES
    print(f"\nresume: seed {seed}, {rounds} rounds, {runs} runs, {kills} kills (files in the journal at each: {at_kill}), {len(keys)} pages, "
          f"{len(keys) - len(set(keys))} duplicates, {PAGES - len(set(keys))} missing")


def test_a_torn_journal_line_is_dropped_and_other_settings_are_refused(inbox: Path, tmp_path: Path, tiny_model: Path):
    out = tmp_path / "r.jsonl"
    journal = journal_path(out)
    files = sorted(p for p in inbox.iterdir() if p.suffix in (".png", ".jpg"))[:2]
    args = ["scan", *map(str, files), "--out", str(out), "--model", str(tiny_model), "--resume"]
    header = {"formreader_resume": 1}
    # A journal from a run killed while writing its second file's line.
    assert CliRunner().invoke(app, args).exit_code == 0
    full = out.read_text()
    out.unlink()
    from formreader.resume import FileKey

    rows = [json.loads(line) for line in full.splitlines()]
    settings = _settings_of(args, tiny_model, tmp_path)
    first = {"file": str(files[0]), **_stat(FileKey.of(files[0])), "rows": [rows[0]]}
    journal.write_text(json.dumps({**header, "settings": settings}) + "\n" + json.dumps(first) + "\n" + '{"file": "torn')
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.read_text() == full and "1 from the resume journal" in " ".join(result.output.split())
    # The same journal under another dpi: refused, nothing touched.
    journal.write_text(json.dumps({**header, "settings": settings}) + "\n")
    result = CliRunner().invoke(app, [*args, "--dpi", "300"])
    assert result.exit_code == 2 and "other settings" in " ".join(result.output.split()), result.output
    assert journal.exists()


def _stat(key) -> dict:
    return {"size": key.size, "mtime_ns": key.mtime_ns}


def _settings_of(args: list[str], model: Path, tmp_path: Path) -> dict:
    """The settings header that a run with these arguments (defaults but --model) writes."""
    from formreader.commands.scan import _resume_settings
    from formreader.config import load_config

    tpl = Template.load()
    return json.loads(json.dumps(_resume_settings(load_config(None, {"model": model}), tpl, None, tpl.layout.field_names)))
