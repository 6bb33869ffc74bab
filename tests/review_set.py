"""A small scanned set for the review/apply tests: generated forms under awkward file names, scanned with --crops."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
from typer.testing import CliRunner

from formreader.cli import app
from formreader.template import Template
from tests.forms import Scan, fill, scan

# File names a clerk's scanner or a colleague can produce: quotes and a comma, a newline, markup
# that would run as script if pasted into HTML unescaped, and Latin-1 bytes that are not UTF-8.
ODD_NAMES = [
    b'a "quoted", name.png',
    b"new\nline.png",
    b"<img src=x onerror=window.pwned=1> &amp; 'x'\xe2\x80\xa8.png",  # U+2028 ends a line for str.splitlines
    b"latin1-\xe9t\xe9.png",
]
VALUES = [
    {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"},
    {"NOM": "MARTIN", "PRENOM": "LUCAS", "DATE": "05/11/2010"},
    {"NOM": "BERNARD", "PRENOM": "EMMA", "DATE": "23/07/2012"},
    {"NOM": "PETIT", "PRENOM": "HUGO", "DATE": "30/01/2011"},
]
# With the CRNN alone and no names prior (which makes MARIE or EMMA surer; also faster), every
# field of these pages is below this: every readable page needs review (deterministic tests).
STRICT = "0.99"


def make_set(root: Path, suffix: str = ".jsonl") -> tuple[Path, Path, dict[str, dict[str, str]]]:
    """Forms under ODD_NAMES in root/forms plus an unreadable file; returns (results, crops, truth by row file)."""
    forms = root / "forms"
    forms.mkdir(parents=True, exist_ok=True)
    tpl = Template.load()
    truth = {}
    for i, (name, values) in enumerate(zip(ODD_NAMES, VALUES)):
        _, png = cv2.imencode(".png", scan(fill(tpl, values), Scan(angle=i - 1.5)))
        path = os.fsencode(forms) + b"/" + name
        with open(path, "wb") as fh:
            fh.write(png.tobytes())
        truth[os.fsdecode(path)] = values
    (forms / "broken.png").write_bytes(b"not an image")
    results, crops = root / f"results{suffix}", root / "crops"
    run = CliRunner().invoke(app, ["scan", str(forms), "--out", str(results), "--crops", str(crops),
                                   "--review-threshold", STRICT, "--second-opinion", "off", "--lexicon", "none"])
    assert run.exit_code == 1, run.output  # broken.png failed; the others were read
    return results, crops, truth
