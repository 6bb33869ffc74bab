"""A review trial: scan a generated set, review it in headless Chromium by keyboard, apply, and
estimate the time a person needs per field.

    python -m formreader.benchmark.review_trial --out out/review-trial --pages 20 --names kaggle-val
    python -m formreader.benchmark.review_trial --out out/review-shot --pages 8 --names fonts --screenshot docs/review.png

The reviewer is simulated: for each field on the page, in the page's order, it looks up the truth
of the generated set and presses Enter when the value is right, Alt+N when an alternative is, else
types the right value and Enter. Every key goes through the real page in Chromium; the export is
applied and the final values are checked against the truth.

A script is not a person, so the time per field is an ESTIMATE from the keystrokes the trial
needed, with the Keystroke-Level Model (Card, Moran & Newell 1980): M = 1.35 s of mental
preparation (look at the crop, compare it with the value) per field, a second M before typing a
correction, K = 0.28 s per key (average typist; 0.20 s for a 55 wpm typist). The wall time of the
scripted run is printed too; it only shows that the page is never what the reviewer waits for.

Alternatives are the ones `scan` writes in its JSONL results (`<FIELD>_alternatives`: the
runner-up readings the recognizers considered).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the trial drives Chromium with the tests' helper

from formreader.fields import make_field
from formreader.template import Template

M, K, K_FAST = 1.35, 0.28, 0.20
THRESHOLD = 0.6  # scan's default review threshold


def formreader(*args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "formreader", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode not in (0, 1):
        sys.exit(f"formreader {' '.join(args)} failed:\n{run.stderr}")


def shrink_png(path: Path) -> None:
    """256-colour palette: a screenshot small enough to commit, colours intact."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)


def typed_form(value: str, kind: str) -> str:
    """What a clerk types for a value: dates as on the form, DD/MM/YYYY."""
    if kind == "date" and len(value) == 10 and value[4] == "-":
        return f"{value[8:]}/{value[5:7]}/{value[:4]}"
    return value


def simulate(driver, truth: dict[tuple[str, int], dict[str, str]], kinds: dict[str, str], screenshot: Path | None,
             shot_after: int) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    sections = driver.find_elements(By.CSS_SELECTOR, "section.item")
    stats = {"fields": len(sections), "accepted": 0, "alternative": 0, "typed": 0, "typed_chars": 0, "keys": 0, "klm": 0.0, "klm_fast": 0.0}
    start = time.perf_counter()
    for i, section in enumerate(sections):
        if screenshot is not None and i == shot_after:
            driver.execute_script("window.scrollTo(0, 0)")  # the top of the page, the current field in view
            driver.save_screenshot(str(screenshot))
            shrink_png(screenshot)
        field_input = driver.switch_to.active_element
        file, page, name = section.get_attribute("data-file"), int(section.get_attribute("data-page")), section.get_attribute("data-field")
        kind = kinds.get(name, "text")
        right = truth[(file, page)][name]
        shown = make_field(name, kind, field_input.get_attribute("value"), 0.0).text
        alts = [b.get_attribute("data-value") for b in section.find_elements(By.CSS_SELECTOR, "button.alt")]
        alt_values = [make_field(name, kind, a, 0.0).text for a in alts]
        if shown == right:
            field_input.send_keys(Keys.ENTER)
            keys, mental, kind_of = 1, 1, "accepted"
        elif right in alt_values:
            field_input.send_keys(Keys.ALT, str(alt_values.index(right) + 1), Keys.NULL)
            keys, mental, kind_of = 2, 2, "alternative"
        else:
            text = typed_form(right, kind)
            field_input.send_keys(text or Keys.BACKSPACE, Keys.ENTER)  # the value is selected: typing replaces it
            keys, mental, kind_of = max(len(text), 1) + 1, 2, "typed"
            stats["typed_chars"] += len(text)
        stats[kind_of] += 1
        stats["keys"] += keys
        stats["klm"] += mental * M + keys * K
        stats["klm_fast"] += mental * M + keys * K_FAST
    stats["script_seconds"] = time.perf_counter() - start
    return stats


def main() -> None:
    # Selenium and the browser helper are dev-only (tests/browser.py); only this trial needs them.
    sys.path.insert(0, str(ROOT))
    from tests import browser

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "review-trial")
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--names", default="kaggle-val", help="synth --names: kaggle-val (real handwriting) or fonts (redistributable)")
    ap.add_argument("--preset", default="mild")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="review every field, not only the doubtful ones")
    ap.add_argument("--screenshot", type=Path, help="save a PNG of the page after --shot-after fields")
    ap.add_argument("--shot-after", type=int, default=2)
    args = ap.parse_args()
    if why := browser.available():
        sys.exit(f"no browser: {why}")

    out = args.out.resolve()
    forms, results, crops, page, final = out / "forms", out / "results.jsonl", out / "crops", out / "review.html", out / "final.csv"
    downloads = out / "downloads"
    for folder in (forms, crops, downloads):  # this script's own outputs from an earlier run
        shutil.rmtree(folder, ignore_errors=True)
    downloads.mkdir(parents=True)
    formreader("synth", str(forms), "--pages", str(args.pages), "--names", args.names, "--preset", args.preset,
               "--seed", str(args.seed), "--formats", "png,jpg,pdf")
    formreader("scan", str(forms), "--out", str(results), "--crops", str(crops))
    kinds = {f.name: f.kind for f in Template.load().layout.fields}
    formreader("review", str(results), "--crops", str(crops), "--out", str(page), *(["--all"] if args.all else []))

    table = pd.read_csv(forms / "truth.csv", dtype=str, keep_default_na=False)
    truth = {(str(forms / r["FILE"]), int(r["PAGE"])): {k: r[k] for k in kinds} for _, r in table.iterrows()}
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8", errors="surrogateescape").split("\n") if line]
    driver = browser.start(downloads, 1280, 1000)
    try:
        driver.get(page.as_uri())
        stats = simulate(driver, truth, kinds, args.screenshot, args.shot_after)
        driver.find_element("id", "export").click()
        exported = browser.wait_for_download(downloads, "corrections.csv")
    finally:
        driver.quit()
    formreader("apply", str(results), str(exported), "--out", str(final))

    done = {(f, int(p), n) for f, p, n, _ in list(csv.reader(io.StringIO(exported.read_text(encoding="utf-8"), newline="")))[1:]}
    final_rows = {(r["file"], int(r["page"])): r for r in csv.DictReader(io.StringIO(final.read_text(encoding="utf-8"), newline=""))}
    wrong_after = sum(final_rows[(f, p)][n] != truth[(f, p)][n] for f, p, n in done)
    readable = [r for r in rows if not r["error"]]
    unreviewed = [(r["file"], r["page"], k) for r in readable for k in kinds if (r["file"], r["page"], k) not in done]
    n = stats["fields"]
    report = {
        "pages": len(rows), "pages_needing_review": sum(bool(r["needs_review"]) for r in rows),
        "fields_on_pages": len(readable) * len(kinds), **stats,
        "reviewed_fields_wrong_after_apply": wrong_after,
        "unreviewed_fields": len(unreviewed),
        "unreviewed_fields_wrong": sum(make_field(k, kinds[k], str(final_rows[(f, p)][k]), 0.0).text != truth[(f, p)][k] for f, p, k in unreviewed),
        "pages_needing_review_after_apply": sum(r["needs_review"] == "True" for r in final_rows.values()),
        "klm_seconds_per_field": round(stats["klm"] / max(n, 1), 2),
        "klm_seconds_per_field_fast_typist": round(stats["klm_fast"] / max(n, 1), 2),
        "klm_minutes_for_the_set": round(stats["klm"] / 60, 1),
        "script_ms_per_field": round(1000 * stats["script_seconds"] / max(n, 1), 1),
    }
    print(json.dumps(report, indent=1))
    (out / "trial.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
