"""The review page: one self-contained HTML file to check and correct doubtful fields by keyboard.

Crops are embedded as data: URIs and the script and style are inline, so the file opens from disk
with no server; a Content-Security-Policy allows only that inline script and style (by hash) and
data: images, so the page can reach no network and a value or file name can never run as script.
Every value from the results reaches the page through `html.escape`; the script reads them back
from `data-*` attributes and writes them only through `textContent`/`value`.

The export (`file,page,field,value` CSV) lists every field the reviewer confirmed (Enter on the
value as read) or changed: confirmed values are labels too, for fine-tuning, and `apply` stops
flagging them. The file name travels as its bytes (`data-file-bytes`, base64), so a name that is not
UTF-8 comes back byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from formreader.corrections import RAW, field_doubtful
from formreader.errors import InputError
from formreader.pipeline import crop_path
from formreader.results import CONFIDENCE, Results

ASSETS = Path(__file__).resolve().parent / "assets" / "review"
ALTERNATIVES = "_alternatives"
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")  # shown as \n, \u2028, ... in a file name


@dataclass
class ReviewItem:
    file: str
    page: int
    field: str
    kind: str  # "text" or "date"
    value: str  # what the input shows: the scanned value, dates as DD/MM/YYYY like on the form
    confidence: float
    doubtful: bool  # below the review threshold, or a date scan could not validate
    page_review: bool  # the page's needs_review
    alternatives: list[str]
    raw: str | None  # what the recognizer read, when the results carry `<FIELD>_raw`
    crop: Path | None  # None when the crop file is missing


@dataclass
class ReviewSet:
    items: list[ReviewItem]
    errors: list[tuple[str, int, str]]  # pages that could not be read: nothing to review, listed on the page
    missing_crops: int


def select_items(results: Results, crops_dir: Path, kinds: dict[str, str], review_threshold: float,
                 include_all: bool = False) -> ReviewSet:
    """Fields to review, doubtful ones first (needs_review pages, lowest confidence first).

    By default: the doubtful fields by this threshold (with scan's threshold, those that set
    needs_review), and every field of a flagged page where none is doubtful by this threshold, so
    no flagged page is skipped. `include_all`: every field of every readable page.
    """
    items, errors = [], []
    for row in results.rows:
        if row.get("error"):
            errors.append((str(row["file"]), int(row["page"]), str(row["error"])))  # type: ignore[arg-type]
            continue
        page_review = row.get("needs_review") in (True, "True", "true")
        fields = [_item(row, name, kinds.get(name, "text"), review_threshold, page_review, crops_dir)
                  for name in results.field_names]
        if not include_all:
            fields = [f for f in fields if f.doubtful] or (fields if page_review else [])
        items.extend(fields)
    order = {name: i for i, name in enumerate(results.field_names)}
    items.sort(key=lambda it: (not it.doubtful, not it.page_review, it.confidence, it.file, it.page, order[it.field]))
    missing = sum(it.crop is None for it in items)
    if items and missing == len(items):
        raise InputError(f"{crops_dir}: none of the {len(items)} crops to review is there; pass the --crops folder "
                         f"of the scan that wrote {results.path}")
    return ReviewSet(items, errors, missing)


def _item(row: dict[str, object], name: str, kind: str, threshold: float, page_review: bool, crops_dir: Path) -> ReviewItem:
    file, page = str(row["file"]), int(row["page"])  # type: ignore[arg-type]
    value = _shown(str(row.get(name) or ""), kind)
    try:
        confidence = float(row.get(name + CONFIDENCE, 0.0))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        confidence = 0.0
    alternatives = []
    for alt in _as_list(row.get(name + ALTERNATIVES)):
        alt = _shown(alt, kind)
        if alt != value and alt not in alternatives:
            alternatives.append(alt)
    raw = row.get(name + RAW)
    path = crop_path(crops_dir, file, page, name)
    return ReviewItem(file, page, name, kind, value, confidence, field_doubtful(row, name, kind, threshold), page_review,
                      alternatives[:9], None if raw is None else str(raw), path if path.is_file() else None)


def _shown(value: str, kind: str) -> str:
    """Dates in the input as written on the form (DD/MM/YYYY): what the clerk sees and types."""
    m = _ISO.match(value) if kind == "date" else None
    return f"{m[3]}/{m[2]}/{m[1]}" if m else value


def _as_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str) and value.startswith("["):  # a list that went through a CSV
        try:
            parsed = json.loads(value)
        except ValueError:
            return []
        return [str(v) for v in parsed] if isinstance(parsed, list) else []
    return []


# ---- HTML -------------------------------------------------------------------------------------

def _attr(value: object) -> str:
    """Escaped for a double-quoted attribute; CR/LF as references so the HTML parser keeps them."""
    return html.escape(str(_displayable(value)), quote=True).replace("\r", "&#13;").replace("\n", "&#10;")


def _text(value: object) -> str:
    return html.escape(str(_displayable(value)), quote=True)


def _displayable(value: object) -> object:
    """A name that is not UTF-8 shows its undecodable bytes as U+FFFD (its bytes travel apart)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def embed_image(path: Path, quality: int = 90) -> str:
    """A data: URI of the crop: JPEG when smaller (scan noise makes PNG crops ~5x larger), else the PNG."""
    png = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality]) if image is not None else (False, None)
    mime, data = ("image/jpeg", jpeg.tobytes()) if ok and len(jpeg) < len(png) else ("image/png", png)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render_page(review: ReviewSet, source: str, review_threshold: float) -> str:
    style = (ASSETS / "review.css").read_text(encoding="utf-8")
    script = (ASSETS / "review.js").read_text(encoding="utf-8")
    sections = "\n".join(_section(i, it, review_threshold) for i, it in enumerate(review.items))
    pages = len({(it.file, it.page) for it in review.items})
    doc_id = hashlib.sha1("\0".join(f"{it.file}\0{it.page}\0{it.field}\0{it.value}" for it in review.items)
                          .encode("utf-8", "surrogateescape")).hexdigest()[:16]
    csp = f"default-src 'none'; img-src data:; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}"
    empty = "" if review.items else '<p class="empty">Nothing to review: no page of these results needs review. Use <code>--all</code> to check every field.</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_attr(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Review · {_text(Path(source).name)}</title>
<style>{style}</style></head>
<body data-doc="{doc_id}">
<header class="bar">
  <div class="title"><h1>formreader review</h1>
    <span class="source" title="{_attr(source)}">{_text(Path(source).name)} · {len(review.items)} fields on {pages} pages</span></div>
  <div class="progress"><div class="meter"><div class="fill" id="meter"></div></div><span id="progress" aria-live="polite"></span></div>
  <button id="export" type="button" title="Ctrl+S">Export corrections</button>
</header>
<p class="keys"><kbd>Enter</kbd> accept &amp; next · type to correct · <kbd>Tab</kbd> / <kbd>&darr;</kbd> next ·
 <kbd>Shift+Tab</kbd> / <kbd>&uarr;</kbd> previous · <kbd>Alt+1</kbd>…<kbd>9</kbd> take an alternative ·
 <kbd>Esc</kbd> undo · <kbd>Ctrl+S</kbd> export</p>
{_errors(review.errors)}{empty}
<main id="items">
{sections}
</main>
<script>{script}</script>
</body></html>
"""


def _section(index: int, it: ReviewItem, threshold: float) -> str:
    level = "low" if it.confidence < threshold else "mid" if it.confidence < (1 + threshold) / 2 else "high"
    name = _CONTROL.sub(lambda m: repr(m[0])[1:-1], Path(_displayable(it.file)).name)  # type: ignore[arg-type]
    file_bytes = base64.b64encode(it.file.encode("utf-8", "surrogateescape")).decode()
    label = f"{it.field}, page {it.page} of {name}"
    if it.crop is not None:
        img = f'<img class="crop" src="{embed_image(it.crop)}" alt="{_attr("crop: " + label)}">'
    else:
        img = '<div class="crop missing">crop not found</div>'
    alts = "".join(
        f'<button type="button" class="alt" tabindex="-1" data-value="{_attr(a)}"><kbd>{n}</kbd>{_text(a)}</button>'
        for n, a in enumerate(it.alternatives, start=1)
    )
    alts_html = f'<div class="alts"><span class="hint">alternatives</span>{alts}</div>' if alts else ""
    raw_html = f'<div class="raw">read as <code>{_text(it.raw)}</code></div>' if it.raw is not None and it.raw != it.value else ""
    placeholder = ' placeholder="DD/MM/YYYY"' if it.kind == "date" else ""
    classes = "item" + (" doubtful" if it.doubtful else "")
    return f"""<section class="{classes}" data-index="{index}" data-file="{_attr(it.file)}" data-file-bytes="{file_bytes}" data-page="{it.page}" data-field="{_attr(it.field)}" data-kind="{it.kind}" data-original="{_attr(it.value)}" data-confidence="{it.confidence:.4f}">
  <div class="where"><span class="field-name">{_text(it.field)}</span><span class="file" title="{_attr(it.file)}">{_text(name)}</span><span class="page">page {it.page}</span><span class="state">to review</span></div>
  <div class="body">{img}
    <div class="answer">
      <div class="line"><input class="value" type="text" value="{_attr(it.value)}"{placeholder} spellcheck="false" autocomplete="off" aria-label="{_attr(label)}"><span class="conf {level}" title="recognizer confidence">{it.confidence:.0%}</span></div>
      {alts_html}{raw_html}
    </div>
  </div>
</section>"""


def _errors(errors: list[tuple[str, int, str]]) -> str:
    if not errors:
        return ""
    lines = "".join(f"<li><span class=\"file\">{_text(f)}</span> page {p}: {_text(e)}</li>" for f, p, e in errors)
    return f'<details class="errors"><summary>{len(errors)} page(s) could not be read (nothing to review; fix the scan)</summary><ul>{lines}</ul></details>\n'


def build_review(results: Results, crops_dir: Path, kinds: dict[str, str], review_threshold: float,
                 include_all: bool = False) -> tuple[str, ReviewSet]:
    review = select_items(results, crops_dir, kinds, review_threshold, include_all)
    return render_page(review, str(results.path), review_threshold), review
