"""The review page in a real browser (headless Chromium): scan -> review -> keyboard -> export -> apply."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from formreader.cli import app
from tests import browser
from tests.review_set import STRICT, make_set

pytestmark = pytest.mark.skipif(bool(browser.available()), reason=browser.available() or "browser available")
runner = CliRunner()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    driver = browser.start(downloads)
    yield driver, downloads
    driver.quit()


def current(driver) -> tuple[int, bytes, str]:
    """(index, file bytes, field) of the section holding the focused input."""
    from selenium.webdriver.common.by import By

    section = driver.switch_to.active_element.find_element(By.XPATH, "./ancestor::section")
    return (int(section.get_attribute("data-index")), base64.b64decode(section.get_attribute("data-file-bytes")),
            section.get_attribute("data-field"))


def test_correct_by_keyboard_export_and_apply(chromium, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, downloads = chromium
    results, crops, _ = make_set(tmp_path)
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8", errors="surrogateescape").split("\n") if line]
    by_name = {os.fsencode(r["file"]).rsplit(b"/", 1)[-1]: r for r in rows}
    newline, latin1, quoted = by_name[b"new\nline.png"], by_name[b"latin1-\xe9t\xe9.png"], by_name[b'a "quoted", name.png']
    newline["NOM_alternatives"] = ["ALTERNATIF", newline["NOM"]]  # as the ensemble writes them
    results.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8", "surrogateescape"))
    page = tmp_path / "review.html"
    run = runner.invoke(app, ["review", str(results), "--crops", str(crops), "--out", str(page), "--review-threshold", STRICT])
    assert run.exit_code == 0, run.output

    driver.get(page.as_uri())
    sections = driver.find_elements(By.CSS_SELECTOR, "section.item")
    n = len(sections)
    assert n >= 6 and driver.find_element(By.ID, "progress").text == f"0 / {n} reviewed · 0 corrected"
    # What the reviewer does, by keyboard only; every other field is skipped with the down arrow.
    plan = {
        (os.fsencode(latin1["file"]), "NOM"): ("type", "lefèvre", "LEFÈVRE"),
        (os.fsencode(quoted["file"]), "DATE"): ("type", "1/2/2003", "2003-02-01"),
        (os.fsencode(newline["file"]), "NOM"): ("alt", "ALTERNATIF", "ALTERNATIF"),
        (os.fsencode(quoted["file"]), "NOM"): ("accept", None, quoted["NOM"]),
    }
    plan = {k: v for k, v in plan.items() if driver.find_elements(
        By.CSS_SELECTOR, f'section[data-file-bytes="{base64.b64encode(k[0]).decode()}"][data-field="{k[1]}"]')}
    assert len(plan) >= 3, "the strict threshold puts these fields on the page"
    done = {}
    for i in range(n):
        index, file_bytes, field = current(driver)
        assert index == i  # Enter, Alt+digit and the down arrow all move to the next field
        field_input = driver.switch_to.active_element
        action, typed, _ = plan.get((file_bytes, field), ("skip", None, None))
        if action == "type":  # the value is selected on focus: typing replaces it
            field_input.send_keys(typed, Keys.ENTER)
        elif action == "alt":
            field_input.send_keys(Keys.ALT, "1", Keys.NULL)
        elif action == "accept":
            original = field_input.get_attribute("value")
            field_input.send_keys("oops")
            field_input.send_keys(Keys.ESCAPE)  # undo restores the value as read
            assert field_input.get_attribute("value") == original
            field_input.send_keys(Keys.ENTER)
        else:
            field_input.send_keys(Keys.ARROW_DOWN)
        if action != "skip":
            done[(file_bytes, field)] = field_input.get_attribute("value")
    corrected = sum(1 for k, v in plan.items() if v[0] != "accept")
    progress = f"{len(plan)} / {n} reviewed · {corrected} corrected"
    assert driver.find_element(By.ID, "progress").text == progress
    assert driver.execute_script("return window.pwned === undefined")  # the file name's onerror never ran
    shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "section.item .file")]
    assert any("<img src=x onerror=window.pwned=1>" in t for t in shown)

    driver.refresh()  # the decisions survive a reload (localStorage)
    assert driver.find_element(By.ID, "progress").text == progress
    driver.switch_to.active_element.send_keys(Keys.CONTROL, "s", Keys.NULL)  # export
    exported = browser.wait_for_download(downloads, "corrections.csv")

    text = exported.read_bytes().decode("utf-8", "surrogateescape")
    lines = list(csv.reader(io.StringIO(text, newline="")))
    assert lines[0] == ["file", "page", "field", "value"]
    assert {(os.fsencode(f), p, name): v for f, p, name, v in lines[1:]} == {
        (k[0], "1", k[1]): v for k, v in done.items()}
    assert {k: v for k, v in done.items()} == {k: plan[k][1] or v for k, v in done.items()}

    final = tmp_path / "final.csv"
    run = runner.invoke(app, ["apply", str(results), str(exported), "--out", str(final), "--review-threshold", STRICT])
    assert run.exit_code == 0, run.output
    out = {r["file"]: r for r in csv.DictReader(io.StringIO(final.read_text(encoding="utf-8", errors="surrogateescape"), newline=""))}
    assert set(out) == {r["file"] for r in rows}  # every row, the non-UTF-8 and newline names included
    for (file_bytes, field), (action, _, expected) in plan.items():
        row = out[os.fsdecode(file_bytes)]
        assert row[field] == expected and row[f"{field}_confidence"] == "1.0"
        assert (field in row["corrected"].split(";")) == (action != "accept")
    for r in rows:
        untouched = [f for f in ("NOM", "PRENOM", "DATE", "CLASSE") if (os.fsencode(r["file"]), f) not in plan]
        assert all(out[r["file"]][f] == r[f] for f in untouched)
