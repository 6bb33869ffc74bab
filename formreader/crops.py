"""Reading single-field crops that come without a template (`formreader read`, crop benchmarks).

Same rules as a form's fields: pale writing is darkened, a printed prefix is stripped, a crop with
no writing reads as "" without asking the recognizer, and the text is normalized for its field kind.

A crop cut without a template may also hold a neighbouring line of the form (Kaggle crops:
"CODE RNE / UAI : 0908585" over "NOM : PEZOT", or "PRENOM : INES" over the birth-date line).
Read whole, such a crop gives a reading nobody believes; read line by line, one line is the
field's. So a crop read with confidence below `LINE_RETRY_BELOW` that holds several main lines of
text (`preprocess.main_lines`: not the cut-off foot of a neighbour) is read again one line at a
time, and the surest valid line reading replaces the whole one.
"""

from __future__ import annotations

import numpy as np

from formreader.fields import make_field
from formreader.preprocess import blank_confidence, darken_pale_writing, main_lines, strip_prefix
from formreader.recognize import grammar as grammars
from formreader.recognize.ensemble import FieldReader
from formreader.recognize.predictor import Predictor, Reading
from formreader.records import FieldResult, Timings

# Below this the models believe nothing they read (a crop read across two lines: < 0.001).
# Higher, right but doubtful names lose to the printed label's line (SOPHIE -> PRENOM): 26 such
# breaks in 2,785 unlabelled crops at 0.1, none seen at 0.005 (MODEL.md has the census).
LINE_RETRY_BELOW = 0.005
LINE_PAD = 2  # pixels kept above and below a line's ink


def read_crops(images: list[np.ndarray], predictor: Predictor | FieldReader, kind: str = "name", name: str = "") -> tuple[list[FieldResult], Timings]:
    """One result per image, in order; `kind` is a field kind ("name", "text", "date", "digits")
    or "raw" (as recognized, no grammar, no normalization, no retry by line)."""
    images = [darken_pale_writing(img) for img in images]
    results: list[FieldResult | None] = [None] * len(images)
    todo = []
    for i, img in enumerate(images):
        blank = blank_confidence(strip_prefix(img))
        if blank is None:
            todo.append(i)
        else:  # a blank field (perhaps just its printed label) reads as ""
            results[i] = FieldResult(name, "", "", blank)
    grammar = "text" if kind == "raw" else kind
    crops = [images[i] for i in todo]
    readings, timings = predictor.predict(crops, [grammar] * len(crops)) if crops else ([], Timings())
    if kind != "raw":
        readings = _retry_by_line(crops, readings, predictor, grammar, timings)
    for i, reading in zip(todo, readings):
        if kind == "raw":
            results[i] = FieldResult(name, reading.text, reading.text, reading.confidence)
        else:
            results[i] = make_field(name, kind, reading.text, reading.confidence, reading.raw, reading.alternatives)
    return results, timings  # type: ignore[return-value]


def _retry_by_line(images: list[np.ndarray], readings: list[Reading], predictor: Predictor | FieldReader,
                   kind: str, timings: Timings) -> list[Reading]:
    """`readings`, with each doubtful multi-line crop's reading replaced by its surest valid line."""
    lines: list[np.ndarray] = []
    owner: list[int] = []
    for i, (img, reading) in enumerate(zip(images, readings)):
        if reading.confidence >= LINE_RETRY_BELOW:
            continue
        bands = main_lines(img)
        if len(bands) > 1:
            for y0, y1 in bands:
                lines.append(img[max(0, y0 - LINE_PAD): y1 + LINE_PAD])
                owner.append(i)
    if not lines:
        return readings
    again, seconds = predictor.predict(lines, [kind] * len(lines))
    timings.merge(seconds)
    out = list(readings)
    field = grammars.of(kind)
    for i, reading in zip(owner, again):
        if field.is_valid(reading.text) and reading.confidence > out[i].confidence:
            out[i] = reading
    return out
