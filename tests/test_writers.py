from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from formreader.errors import ConfigError
from formreader.records import FieldResult, PageRecord
from formreader.writers import write_records


def record(name: str) -> PageRecord:
    rec = PageRecord(file="a.pdf", page=2, alignment=0.97, aligned=True, needs_review=False)
    rec.fields["NOM"] = FieldResult("NOM", name, name.lower(), 0.91)
    return rec


def test_rewrite_is_atomic_and_readable_by_others(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    write_records(out, [record("MARTIN")], ["NOM"])
    write_records(out, [record("DURAND"), record("PETIT")], ["NOM"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["NOM"] for r in rows] == ["DURAND", "PETIT"]
    assert rows[0] == {"file": "a.pdf", "page": 2, "NOM": "DURAND", "NOM_confidence": 0.91,
                       "NOM_raw": "durand", "NOM_alternatives": [],
                       "needs_review": False, "alignment": 0.97, "error": ""}
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_unknown_extension_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match=".csv, .json or .jsonl"):
        write_records(tmp_path / "r.xlsx", [record("X")], ["NOM"])
    assert not list(tmp_path.iterdir())
