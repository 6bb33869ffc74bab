"""The benchmark report: one dict, written as JSON, shown as a rich table, drawn as PNG plots,
and an HTML page of the worst errors with the crops the recognizer saw.

Next to `REPORT.json` go `REPORT.fields.png`, `REPORT.coverage.png`, `REPORT.errors.html` and
`REPORT.items.csv` (every scored field: truth, reading, confidence, baselines' readings).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table

from formreader.benchmark.metrics import (
    Item,
    coverage_curve,
    review_split,
    score_items,
    threshold_for,
)
from formreader.benchmark.runner import Run
from formreader.records import STAGES
from formreader.writers import atomic_write_text

WORST = 40  # rows on the error page
REVIEW_TARGET = 0.98  # pages kept without review should be this often fully right


@dataclass
class Baseline:
    name: str
    version: str
    items: list[Item]  # same order as the run's items, predictions replaced
    seconds: float


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def build_report(run: Run, set_path: Path, model: str, template: str, review_threshold: float, baselines: list[Baseline] = ()) -> dict:
    per_field, overall = score_items(run.items, run.fields)
    pages_per_s = run.pages / run.seconds if run.pages and run.seconds > 0 else None
    report = {
        "set": str(set_path),
        "kind": run.kind,
        "model": model,
        "template": template,
        "pages": run.pages,
        "crops": run.crops,
        "scored_fields": len(run.items),
        "fields": {name: s.as_dict() for name, s in per_field.items()},
        "overall": overall.as_dict(),
        "review": {"threshold": review_threshold, **{k: _r(v) if isinstance(v, float) else v for k, v in review_split(run.items).items()}},
        "coverage_curve": [{k: _r(v) for k, v in asdict(p).items()} for p in coverage_curve(run.items)],
        "threshold_for_target": _threshold(run.items),
        "throughput": {
            "seconds": _r(run.seconds, 3),
            "pages_per_s": _r(pages_per_s, 3),
            "crops_per_s": _r(run.crops / run.seconds if run.seconds > 0 else None, 2),
        },
        "stages": _stages(run),
        "memory": {"peak_rss_mb": _r(run.peak_rss_mb, 1)},
        "baselines": {b.name: _baseline(b, run) for b in baselines},
    }
    if run.kind == "forms":
        scores = run.alignment_scores or [0.0]
        report["alignment"] = {
            "min": _r(min(scores)), "mean": _r(float(np.mean(scores))),
            "failed_pages": run.failed_pages, "misaligned": run.misaligned,
        }
    return report


def _threshold(items: list[Item]) -> dict:
    """The review threshold this set asks for: the lowest one keeping pages 98% fully right."""
    point = threshold_for(items, REVIEW_TARGET)
    out = {"target_units_right": REVIEW_TARGET}
    if point is not None:
        out.update({k: _r(v) for k, v in asdict(point).items()})
    return out


def _stages(run: Run) -> dict:
    """Seconds per stage summed over pages. Ingest, align and segment run in worker threads, so
    their sum can exceed the wall time; recognize and decode run batched on the main thread."""
    units = run.pages or run.crops or 1
    # Then the parts of a stage that a recognizer reports (e.g. the second opinion's share).
    extra = [s for s in run.timings.seconds if s not in STAGES]
    return {
        s: {"seconds": _r(run.timings.seconds.get(s, 0.0), 3), "ms_per_page" if run.pages else "ms_per_crop": _r(1000 * run.timings.seconds.get(s, 0.0) / units, 2)}
        for s in (*STAGES, *extra)
    }


def _baseline(b: Baseline, run: Run) -> dict:
    per_field, overall = score_items(b.items, run.fields)
    # Same ingest/align/segment as the CRNN run, Tesseract in place of recognize+decode.
    model_read = run.timings.seconds.get("recognize", 0.0) + run.timings.seconds.get("decode", 0.0)
    wall = max(run.seconds - model_read, 0.0) + b.seconds
    return {
        "version": b.version,
        "fields": {name: s.as_dict() for name, s in per_field.items()},
        "overall": overall.as_dict(),
        "throughput": {
            "recognize_seconds": _r(b.seconds, 3),
            "crops_per_s": _r(len(b.items) / b.seconds if b.seconds > 0 else None, 2),
            "pages_per_s": _r(run.pages / wall if run.pages and wall > 0 else None, 3),
        },
    }


# --- files ------------------------------------------------------------------------------------

def sibling(json_path: Path, suffix: str) -> Path:
    return Path(json_path).with_suffix(suffix)


def write_report(report: dict, json_path: Path, run: Run, baselines: list[Baseline] = (), worst: int = WORST) -> dict:
    """Write JSON, plots and the error page; returns the report with their paths added."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    files = {
        "fields_png": str(plot_fields(report, sibling(json_path, ".fields.png"))),
        "coverage_png": str(plot_coverage(report, sibling(json_path, ".coverage.png"))),
        "errors_html": str(write_errors_html(run, baselines, sibling(json_path, ".errors.html"), worst)),
        "items_csv": str(write_items_csv(run, baselines, sibling(json_path, ".items.csv"))),
    }
    report = {**report, "files": files}
    atomic_write_text(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def write_items_csv(run: Run, baselines: list[Baseline], path: Path) -> Path:
    """Every scored field, for digging further (pandas, a spreadsheet)."""
    import pandas as pd

    table = pd.DataFrame([
        {"source": it.source, "field": it.field, "truth": it.truth, "pred": it.pred,
         "confidence": round(it.confidence, 4), "needs_review": it.needs_review, "correct": it.correct,
         **{b.name: b.items[i].pred for b in baselines}}
        for i, it in enumerate(run.items)
    ])
    atomic_write_text(path, table.to_csv(index=False))
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_fields(report: dict, path: Path) -> Path:
    plt = _pyplot()
    names = list(report["fields"])
    systems = [("formreader", report["fields"])] + [(k, v["fields"]) for k, v in report["baselines"].items()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(systems)
    x = np.arange(len(names))
    for k, (label, fields) in enumerate(systems):
        axes[0].bar(x + k * width, [fields[n]["exact_match"] for n in names], width, label=label)
        axes[1].bar(x + k * width, [fields[n]["cer"] for n in names], width, label=label)
    for ax, title in zip(axes, ("exact match (higher is better)", "CER (lower is better)")):
        ax.set_xticks(x + width * (len(systems) - 1) / 2, names)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1)
    axes[0].legend()
    fig.suptitle(f"per-field accuracy — {Path(report['set']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_coverage(report: dict, path: Path) -> Path:
    plt = _pyplot()
    curve = report["coverage_curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker=".", label="keep the most confident")
    review = report["review"]
    if review.get("accuracy_kept") is not None:
        ax.scatter([review["coverage"]], [review["accuracy_kept"]], color="red", zorder=3,
                   label=f"needs_review set aside (threshold {review['threshold']})")
    else:  # an over-cautious confidence: say so rather than draw nothing
        ax.annotate(f"needs_review (threshold {review['threshold']}) sets aside every page",
                    (0.02, 0.2), xycoords="axes fraction", color="red")
    ax.set_xlabel("coverage (fraction of pages kept)" if report["kind"] == "forms" else "coverage (fraction of crops kept)")
    ax.set_ylabel("field exact match on kept")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("accuracy versus coverage")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _img_tag(path: object, max_w: int = 600, max_h: int = 90) -> str:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path else None
    if gray is None or gray.size == 0:
        return "<em>no crop</em>"
    factor = min(1.0, max_w / gray.shape[1], max_h / gray.shape[0])
    if factor < 1.0:
        gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", gray)
    # Inline images: the page stays whole when moved or mailed, and the crops need no folder.
    return f'<img alt="crop" src="data:image/png;base64,{base64.b64encode(buf.tobytes()).decode()}">' if ok else "<em>no crop</em>"


def worst_errors(items: list[Item], count: int) -> list[int]:
    """Indices of wrong readings, worst first: most characters wrong, then most confident."""
    from formreader.benchmark.metrics import cer

    wrong = [i for i, it in enumerate(items) if not it.correct]
    wrong.sort(key=lambda i: (-cer(items[i].pred, items[i].truth), -items[i].confidence))
    return wrong[:count]


def write_errors_html(run: Run, baselines: list[Baseline], path: Path, count: int = WORST) -> Path:
    from formreader.benchmark.metrics import cer

    esc = html.escape
    heads = "".join(f"<th>{esc(b.name)}</th>" for b in baselines)
    rows = []
    for i in worst_errors(run.items, count):
        it = run.items[i]
        base = "".join(f"<td class=mono>{esc(b.items[i].pred)}</td>" for b in baselines)
        rows.append(
            f"<tr><td>{_img_tag(it.crop)}</td><td>{esc(it.field)}</td><td class=mono>{esc(it.truth) or '<em>blank</em>'}</td>"
            f"<td class='mono bad'>{esc(it.pred) or '<em>blank</em>'}</td>{base}<td>{it.confidence:.2f}</td>"
            f"<td>{cer(it.pred, it.truth):.2f}</td><td class=src>{esc(it.source)}</td></tr>"
        )
    wrong = sum(1 for it in run.items if not it.correct)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>formreader — worst errors</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:middle}} .mono{{font-family:monospace;font-size:1.1em}}
.bad{{color:#b00}} .src{{color:#666;font-size:.85em}} img{{display:block}}</style></head><body>
<h1>Worst errors</h1>
<p>{esc(str(run.kind))} set: {wrong} wrong of {len(run.items)} scored fields; the {len(rows)} worst shown
(most characters wrong first, then most confident). Each crop is what the recognizer saw.</p>
<table><tr><th>crop</th><th>field</th><th>truth</th><th>formreader</th>{heads}<th>confidence</th><th>CER</th><th>source</th></tr>
{chr(10).join(rows) or '<tr><td colspan=8>no errors</td></tr>'}
</table></body></html>
"""
    atomic_write_text(path, page)
    return path


# --- console ----------------------------------------------------------------------------------

def _pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}%"


def accuracy_table(report: dict) -> Table:
    table = Table(title=f"formreader benchmark — {report['set']}")
    table.add_column("field")
    table.add_column("n", justify="right")
    table.add_column("exact", justify="right")
    table.add_column("CER", justify="right")
    table.add_column("WER", justify="right")
    table.add_column("blank P/R", justify="right")
    for name in report["baselines"]:
        table.add_column(f"{name} exact", justify="right", style="dim")
        table.add_column(f"{name} CER", justify="right", style="dim")
    rows = [(n, s, {b: v["fields"][n] for b, v in report["baselines"].items()}) for n, s in report["fields"].items()]
    rows.append(("overall", report["overall"], {b: v["overall"] for b, v in report["baselines"].items()}))
    for name, s, base in rows:
        cells = [_pct(s["exact_match"]), _pct(s["cer"]), _pct(s["wer"]), f"{_pct(s['blank_precision'], 0)}/{_pct(s['blank_recall'], 0)}"]
        for b in base.values():
            cells += [_pct(b["exact_match"]), _pct(b["cer"])]
        table.add_row(f"[bold]{name}[/]" if name == "overall" else name, str(s["n"]), *cells)
    return table


def _curve_marks(curve: list[dict], marks=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> list[dict]:
    """The curve's points nearest to a few coverages (the table's short version of the curve)."""
    if not curve:
        return []
    picked = {id(min(curve, key=lambda p: abs(p["coverage"] - m))): None for m in marks}
    return [p for p in curve if id(p) in picked]


def speed_table(report: dict) -> Table:
    table = Table(title="speed, memory and confidence", show_header=False)
    t = report["throughput"]
    if report["pages"]:
        table.add_row("pages", f"{report['pages']} in {t['seconds']:.1f} s → {t['pages_per_s']:.2f} pages/s")
    table.add_row("crops", f"{report['crops']} → {t['crops_per_s']:.1f} crops/s")
    for stage, v in report["stages"].items():
        per = v.get("ms_per_page", v.get("ms_per_crop"))
        table.add_row(f"  {stage}", f"{v['seconds']:.2f} s ({per:.1f} ms/{'page' if report['pages'] else 'crop'})")
    table.add_row("peak memory", f"{report['memory']['peak_rss_mb']:.0f} MB")
    r = report["review"]
    table.add_row(
        "needs_review",
        f"{r['flagged']}/{r['units']} set aside → coverage {_pct(r['coverage'])}, "
        f"exact on kept {_pct(r['accuracy_kept'])}, on flagged {_pct(r['accuracy_flagged'])}",
    )
    th = report.get("threshold_for_target", {})
    unit = "pages" if report["pages"] else "crops"
    table.add_row(
        f"{_pct(th.get('target_units_right'), 0)} right",
        f"--review-threshold {th['threshold']:.4g} keeps {_pct(th['coverage'])} of {unit}, {_pct(th['units_right'])} fully right"
        if "threshold" in th else f"no review threshold keeps {unit} {_pct(th.get('target_units_right'), 0)} fully right",
    )
    for p in _curve_marks(report["coverage_curve"]):
        table.add_row("  coverage", f"{_pct(p['coverage'])} kept at confidence ≥ {p['threshold']:.4g}: {_pct(p['units_right'])} of {unit} fully right")
    if "alignment" in report:
        a = report["alignment"]
        table.add_row("alignment", f"min {a['min']:.2f}, mean {a['mean']:.2f}, failed pages {a['failed_pages']}")
    for name, b in report["baselines"].items():
        bt = b["throughput"]
        pages = f", ~{bt['pages_per_s']:.2f} pages/s (estimated)" if bt.get("pages_per_s") else ""
        table.add_row(name, f"{b['version']}: {bt['crops_per_s']:.1f} crops/s{pages}")
    return table
