"""`formreader scan` under hostile names, bad options, crashes and long files (issue 14)."""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from formreader.cli import app
from formreader.template import Template
from tests.forms import Scan, fill, scan

runner = CliRunner()
VALUES = {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"}


@pytest.fixture(scope="module")
def form_png(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("form") / "form.png"
    cv2.imwrite(str(path), scan(fill(Template.load(), VALUES), Scan(angle=1.5)))
    return path.read_bytes()


def _said(result) -> str:
    return " ".join(result.output.split())  # rich wraps long lines


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        return list(csv.DictReader(fh))


def test_odd_and_hostile_file_names_given_by_bare_name(tmp_path: Path, form_png: bytes, tiny_model: Path, monkeypatch):
    names = [os.fsdecode(b"a\xffb.png"), "=1+1.png", '=HYPERLINK("x","y").png', 'quote", comma.png', "new\nline.png"]
    for name in names:
        (tmp_path / name).write_bytes(form_png)
    monkeypatch.chdir(tmp_path)  # `formreader scan *.png`: the names arrive bare
    result = runner.invoke(app, ["scan", *names, "--out", "r.csv", "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "r.csv")
    assert [r["error"] for r in rows] == [""] * len(names)
    written = [r["file"].removeprefix("'") for r in rows]
    assert [os.fsencode(n) for n in written] == [os.fsencode(n) for n in names]  # byte for byte
    assert rows[1]["file"] == "'=1+1.png" and rows[2]["file"].startswith("'=HYPERLINK")  # inert in a spreadsheet
    result = runner.invoke(app, ["scan", names[0], names[1], "--out", "r.jsonl", "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    import json

    assert [json.loads(line)["file"] for line in (tmp_path / "r.jsonl").read_text("utf-8").splitlines()] == names[:2]


def _probe_unwritable(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        return locked / "r.csv"
    if not Path("/proc/self").is_dir():
        pytest.skip("root without /proc: no read-only folder to try")
    return Path("/proc/formreader-r.csv")  # root may write anywhere but in a read-only filesystem


@pytest.mark.parametrize(
    "options, message",
    [
        (["--threads", "10000"], "threads must be"),
        (["--threads", "-1"], "threads must be"),
        (["--dpi", "0"], "dpi must be"),
        (["--dpi", "nan"], "dpi must be"),
        (["--review-threshold", "nan"], "review_threshold must be"),
        (["--review-threshold", "1.5"], "review_threshold must be"),
        (["--batch-size", "0"], "batch_size must be"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path: Path, form_png: bytes, options, message, monkeypatch):
    (tmp_path / "f.png").write_bytes(form_png)
    monkeypatch.setattr("formreader.commands.scan.discover_inputs", lambda *a: pytest.fail("work started"))
    result = runner.invoke(app, ["scan", str(tmp_path / "f.png"), "--out", str(tmp_path / "r.csv"), *options])
    assert result.exit_code == 2 and message in _said(result), result.output
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("where", ["folder", "under-a-file", "unwritable"])
def test_bad_output_locations_are_refused_before_any_work(tmp_path: Path, form_png: bytes, where: str, monkeypatch):
    (tmp_path / "f.png").write_bytes(form_png)
    out = {"folder": tmp_path, "under-a-file": tmp_path / "f.png" / "r.csv", "unwritable": None}[where]
    out = out or _probe_unwritable(tmp_path)
    if where == "folder":
        (tmp_path / "results.csv").mkdir()
        out = tmp_path / "results.csv"
    monkeypatch.setattr("formreader.commands.scan.discover_inputs", lambda *a: pytest.fail("work started"))
    result = runner.invoke(app, ["scan", str(tmp_path / "f.png"), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert {"folder": "is a folder", "under-a-file": "is not a folder", "unwritable": "cannot write"}[where] in _said(result)


def test_a_crash_has_its_own_exit_code_and_a_traceback_file(tmp_path: Path, form_png: bytes, tiny_model: Path, monkeypatch):
    (tmp_path / "f.png").write_bytes(form_png)

    def boom(*args, **kwargs):
        raise ZeroDivisionError("simulated bug in [draft]")  # brackets: not console markup

    monkeypatch.setattr("formreader.pipeline.Scanner.scan", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    result = runner.invoke(app, ["scan", str(tmp_path / "f.png"), "--out", str(tmp_path / "r.csv"), "--model", str(tiny_model)])
    assert result.exit_code == 3, result.output
    assert "crashed (ZeroDivisionError: simulated bug in [draft])" in _said(result) and "traceback in" in _said(result)
    (log,) = tmp_path.glob("formreader-crash-*.log")
    assert "Traceback" in log.read_text() and "simulated bug" in log.read_text()
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("command", ["read", "review", "apply", "template show", "synth"])
def test_every_command_reports_a_crash_as_exit_3(command: str, tmp_path: Path, monkeypatch):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr("formreader.cli._config", boom)  # the first library call of these commands
    monkeypatch.setattr("formreader.template.Template.load", boom)
    monkeypatch.setattr("formreader.template.create_template", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    (tmp_path / "r.csv").write_text("file,page\n")
    (tmp_path / "crops").mkdir()
    args = {"read": ["read", str(tmp_path), "--out", str(tmp_path / "o.csv")],
            "review": ["review", str(tmp_path / "r.csv"), "--crops", str(tmp_path / "crops"), "--out", str(tmp_path / "p.html")],
            "apply": ["apply", str(tmp_path / "r.csv"), str(tmp_path / "r.csv"), "--out", str(tmp_path / "f.csv")],
            "template show": ["template", "show"],
            "synth": ["synth", str(tmp_path / "set")]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "crashed (ZeroDivisionError: simulated bug)" in _said(result)


def test_crops_of_same_named_files_never_collide(tmp_path: Path, form_png: bytes, tiny_model: Path):
    from formreader.pipeline import crop_path

    for sub in ("x", "y", "x/y"):
        (tmp_path / "in" / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / sub / "scan.png").write_bytes(form_png)
    (tmp_path / "in" / "x" / "scan.jpg").write_bytes(cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(form_png, np.uint8), 0))[1].tobytes())
    crops = tmp_path / "crops"
    result = runner.invoke(app, ["scan", str(tmp_path / "in"), "--out", str(tmp_path / "r.csv"), "--crops", str(crops), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    rows = _read_csv(tmp_path / "r.csv")
    assert len(rows) == 4 and len(list(crops.glob("*.png"))) == 4 * 4  # 4 pages x 4 fields, none overwritten
    paths = {crop_path(crops, r["file"], int(r["page"]), "NOM") for r in rows}
    assert len(paths) == 4 and all(p.exists() for p in paths)


def test_pages_of_one_file_stream_with_a_bounded_number_in_flight(tmp_path: Path, tiny_model: Path, monkeypatch):
    """A 60-frame TIFF: progress learns 60 pages up front, pages are finished one by one, and
    never more than a small window of them has been decoded but not yet finished."""
    from formreader import pipeline
    from formreader.pipeline import PAGES_PER_TASK, RECOGNIZERS, PipelineSettings, Scanner
    from formreader.recognize.predictor import RecognizerSettings, load_predictor

    frames = [Image.fromarray(np.full((80, 60), 255, np.uint8)) for _ in range(60)]
    frames[0].save(tmp_path / "long.tif", save_all=True, append_images=frames[1:])
    decoded, lock, in_flight = [0], threading.Lock(), []
    real = pipeline.iter_pages

    def counting(*args, **kwargs):
        for page in real(*args, **kwargs):
            with lock:
                decoded[0] += 1
            yield page

    monkeypatch.setattr(pipeline, "iter_pages", counting)
    predictor = load_predictor(tiny_model, RecognizerSettings(batch_size=8))
    scanner = Scanner(Template.load(), predictor, PipelineSettings(), workers=2)
    opened, finished = [], []

    def on_page(record):
        finished.append(record.page)
        with lock:
            in_flight.append(decoded[0] - len(finished))

    records = list(scanner.scan([tmp_path / "long.tif"], on_open=lambda p, n: opened.append(n), on_page=on_page))
    assert opened == [60] and finished == list(range(1, 61)) and [r.page for r in records] == finished
    # tasks in the window + the batches being recognized and the one waiting its turn
    bound = (2 * 2 + 1) * PAGES_PER_TASK + (RECOGNIZERS + 1) * (8 + PAGES_PER_TASK)
    assert max(in_flight) <= bound < 60, max(in_flight)
