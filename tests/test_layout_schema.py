"""Layout validation (formreader/layout_schema.py): every bad layout of issue 15 is refused, by
`template create` (exit 2, a message naming the field and the rule) and by `Template.load`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from formreader.cli import app
from formreader.errors import TemplateError
from formreader.render import render_layout
from formreader.template import TEMPLATE_FILE, Layout, Template
from tests.forms import SECOND_LAYOUT

runner = CliRunner()


def _with(mutate) -> dict:
    raw = copy.deepcopy(SECOND_LAYOUT)
    mutate(raw)
    return raw


def _field(i: int, **changes):
    return lambda raw: raw["fields"][i].update(changes)


# (case, layout change, words the message must contain: the field and the rule)
BAD = {
    "page_mm zero": (lambda r: r.update(page_mm=[0, 0]), ["page_mm[0]", "greater than 0"]),
    "page_mm negative": (lambda r: r.update(page_mm=[-210, 297]), ["page_mm[0]", "greater than 0"]),
    "box negative": (_field(1, value_mm=[-5, 108, 150, 14]), ["'NOM'", "value_mm[0]", "greater than or equal to 0"]),
    "box width zero": (_field(1, value_mm=[25, 108, 0, 14]), ["'NOM'", "value_mm[2]", "greater than 0"]),
    "box off the page": (_field(1, value_mm=[100, 108, 150, 14]), ["'NOM'", "outside the 210 x 297 mm page"]),
    "box NaN": (_field(2, value_mm=[25, float("nan"), 70, 14]), ["'DATE'", "value_mm[1]", "finite"]),
    "box Infinity": (_field(2, value_mm=[25, 143, float("inf"), 14]), ["'DATE'", "value_mm[2]", "finite"]),
    "box 3 numbers": (_field(0, value_mm=[25, 73, 120]), ["'PRENOM'", "value_mm", "4 numbers"]),
    "box a string": (_field(0, value_mm=[25, "73", 120, 14]), ["'PRENOM'", "value_mm[1]", "number"]),
    "field named file": (_field(1, name="file"), ["'file'", "reserved"]),
    "field named error": (_field(1, name="error"), ["'error'", "reserved"]),
    "field named *_confidence": (_field(1, name="NOM_confidence"), ["'NOM_confidence'", "reserved"]),
    "duplicate names": (_field(1, name="PRENOM"), ["'PRENOM'", "duplicate"]),
    "unknown kind": (_field(1, kind="signature"), ["'NOM'", "kind", "'digits'"]),
    "slash outside its box": (_field(2, slashes_mm=[21, 90]), ["'DATE'", "slashes_mm", "outside the box"]),
    "no fields key": (lambda r: r.pop("fields"), ["fields", "required"]),
    "empty fields": (lambda r: r.update(fields=[]), ["fields", "at least 1"]),
    "field without value_mm": (lambda r: r["fields"][3].pop("value_mm"), ["'VILLE'", "value_mm", "required"]),
    "a typo in a key": (_field(3, undreline=True), ["'VILLE'", "undreline", "unknown key"]),
}


@pytest.fixture(scope="module")
def blank(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("blank") / "blank.png"
    cv2.imwrite(str(path), render_layout(Layout.from_dict(SECOND_LAYOUT), dpi=50))
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_template_create_refuses_a_bad_layout_naming_field_and_rule(case, blank, tmp_path):
    mutate, words = BAD[case]
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps(_with(mutate)))  # NaN and Infinity as JSON writes them (Python's json accepts them)
    result = runner.invoke(app, ["template", "create", str(blank), "--layout", str(layout), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    message = " ".join(result.output.split())
    for word in words:
        assert word in message, (case, message)
    assert "Error(" not in message and "KeyError" not in message  # never a raw Python repr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("case", ["box NaN", "field named file", "page_mm negative", "box off the page"])
def test_loading_a_template_with_a_bad_layout_fails(case, tmp_path):
    """A template.json edited by hand (or written by an older formreader) is checked on load too."""
    good = Template.load()
    folder = good.save(tmp_path / "tpl")
    meta = json.loads((folder / TEMPLATE_FILE).read_text())
    meta["layout"] = _with(BAD[case][0])  # the second form is A4 too: only the broken rule differs
    (folder / TEMPLATE_FILE).write_text(json.dumps(meta))
    with pytest.raises(TemplateError) as info:
        Template.load(folder)
    for word in BAD[case][1]:
        assert word in str(info.value)
    result = runner.invoke(app, ["scan", str(tmp_path), "--out", str(tmp_path / "r.csv"), "--template", str(folder)])
    assert result.exit_code == 2 and not (tmp_path / "r.csv").exists()


def test_good_layouts_still_load_and_every_kind_is_accepted(blank, tmp_path):
    raw = _with(lambda r: [f.update(kind=k) for f, k in zip(r["fields"], ["name", "text", "date", "digits"])])
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps(raw))
    result = runner.invoke(app, ["template", "create", str(blank), "--layout", str(layout), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    kinds = [f.kind for f in Template.load(tmp_path / "t").layout.fields]
    assert kinds == ["name", "text", "date", "digits"]
    assert Template.load().layout.field_names == ["NOM", "PRENOM", "DATE", "CLASSE"]


def test_a_blank_with_other_proportions_than_the_page_is_refused(tmp_path):
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.full((210, 297), 255, np.uint8))  # landscape, for a portrait layout
    layout = tmp_path / "layout.json"
    layout.write_text(json.dumps(SECOND_LAYOUT))
    result = runner.invoke(app, ["template", "create", str(wide), "--layout", str(layout), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "page_mm" in result.output
