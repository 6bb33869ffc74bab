"""Reading single-field crops that come without a template (`formreader read`, crop benchmarks).

Same rules as a form's fields: a printed prefix is stripped, a crop with no writing reads as ""
without asking the recognizer, and the text is normalized for its field kind.
"""

from __future__ import annotations

import numpy as np

from formreader.fields import make_field
from formreader.preprocess import blank_confidence, strip_prefix
from formreader.recognize.ensemble import FieldReader
from formreader.recognize.predictor import Predictor
from formreader.records import FieldResult, Timings


def read_crops(images: list[np.ndarray], predictor: Predictor | FieldReader, kind: str = "name", name: str = "") -> tuple[list[FieldResult], Timings]:
    """One result per image, in order; `kind` is a field kind ("name", "text", "date", "digits")
    or "raw" (as recognized, no grammar, no normalization)."""
    results: list[FieldResult | None] = [None] * len(images)
    todo = []
    for i, img in enumerate(images):
        blank = blank_confidence(strip_prefix(img))
        if blank is None:
            todo.append(i)
        else:  # a blank field (perhaps just its printed label) reads as ""
            results[i] = FieldResult(name, "", "", blank)
    grammar = "text" if kind == "raw" else kind
    readings, timings = predictor.predict([images[i] for i in todo], [grammar] * len(todo)) if todo else ([], Timings())
    for i, reading in zip(todo, readings):
        if kind == "raw":
            results[i] = FieldResult(name, reading.text, reading.text, reading.confidence)
        else:
            results[i] = make_field(name, kind, reading.text, reading.confidence, reading.raw, reading.alternatives)
    return results, timings  # type: ignore[return-value]
