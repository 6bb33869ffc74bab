"""Typed results that flow between stages, writers, the benchmark and the watcher."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STAGES = ("ingest", "align", "segment", "recognize", "decode")


@dataclass
class Timings:
    """Seconds spent per stage; summed across pages and files."""

    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def merge(self, other: "Timings") -> None:
        for stage, sec in other.seconds.items():
            self.add(stage, sec)

    @property
    def total(self) -> float:
        # Other keys are parts of a stage (e.g. the second opinion's share of "recognize").
        return sum(self.seconds.get(s, 0.0) for s in STAGES)


@dataclass
class Page:
    """One rendered page of an input file (gray uint8)."""

    file: str
    page: int  # 1-based
    image: np.ndarray | None
    error: str = ""


@dataclass
class FieldCrop:
    """A field cut from an aligned page, printed ink removed, waiting for recognition."""

    name: str
    kind: str  # "text" or "date"
    image: np.ndarray  # gray uint8, handwriting only
    blank_confidence: float | None = None  # set when the crop holds no writing
    choices: tuple[str, ...] = ()  # the field's closed list of values, if any

    @property
    def blank(self) -> bool:
        return self.blank_confidence is not None


@dataclass
class FieldResult:
    name: str
    text: str  # normalized value ("" when blank, raw text when invalid)
    raw: str  # what the recognizer read
    confidence: float  # in [0, 1]
    valid: bool = True
    note: str = ""  # why the value is doubtful (invalid date, ...)
    alternatives: tuple[str, ...] = ()  # runner-up values (normalized), best first

    def doubtful(self, review_threshold: float) -> bool:
        """Whether a person should look at it: an invalid value, or a confidence below the threshold."""
        return not self.valid or self.confidence < review_threshold


@dataclass
class PageRecord:
    """One output row: a page of a file, or a file that could not be read."""

    file: str
    page: int
    fields: dict[str, FieldResult] = field(default_factory=dict)
    alignment: float = 0.0
    aligned: bool = False
    needs_review: bool = True
    error: str = ""
    timings: Timings = field(default_factory=Timings)

    def row(self, field_names: list[str], detail: bool = False) -> dict[str, object]:
        """Flat dict in the documented column order (CSV/JSON writers use this).

        `detail` (JSON and JSONL) adds per field `<FIELD>_raw`, the recognizers' own reading
        before field grammar and normalization, and `<FIELD>_alternatives`, up to five runner-up
        values, best first.
        """
        out: dict[str, object] = {"file": self.file, "page": self.page}
        for name in field_names:
            res = self.fields.get(name)
            out[name] = res.text if res else ""
        for name in field_names:
            res = self.fields.get(name)
            out[f"{name}_confidence"] = round(res.confidence, 4) if res else 0.0
        if detail:
            for name in field_names:
                res = self.fields.get(name)
                out[f"{name}_raw"] = res.raw if res else ""
            for name in field_names:
                res = self.fields.get(name)
                out[f"{name}_alternatives"] = list(res.alternatives) if res else []
        out["needs_review"] = self.needs_review
        out["alignment"] = round(self.alignment, 4)
        out["error"] = self.error
        return out
