"""Crops read without a template: printed prefixes, neighbouring lines of the form."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from formreader.crops import LINE_RETRY_BELOW, read_crops
from formreader.preprocess import find_prefix_end, main_lines, text_lines
from formreader.recognize.ensemble import load_reader
from formreader.recognize.predictor import Reading, RecognizerSettings
from formreader.records import Timings


def _colon(img: np.ndarray, x: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> None:
    """Two stacked blobs at x: (y, width, height) each."""
    for y, w, h in (top, bottom):
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), 0, -1)


def test_a_printed_colon_ends_the_prefix_but_an_i_does_not():
    crop = np.full((31, 280), 255, np.uint8)
    cv2.putText(crop, "NOM", (4, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1)
    _colon(crop, 38, (15, 3, 3), (20, 3, 3))  # equal dots spanning the x-height, near the M: a colon
    cv2.putText(crop, "PAUL", (120, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    assert find_prefix_end(crop) == 41

    name = np.full((31, 280), 255, np.uint8)
    cv2.putText(name, "VALER", (4, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    _colon(name, 103, (11, 4, 3), (16, 3, 6))  # a dot over a stem twice as tall: an i
    cv2.putText(name, "US", (120, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    assert find_prefix_end(name) is None

    # Equal dots after a capital, but as tall as it and as far from it as the letters are apart:
    # a handwritten i among capitals (RiCHARD), not a label's colon.
    tall = np.full((31, 280), 255, np.uint8)
    cv2.putText(tall, "R", (4, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    _colon(tall, 34, (9, 3, 4), (18, 3, 5))
    cv2.putText(tall, "CHARD", (50, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
    assert find_prefix_end(tall) is None
    small = tall.copy()  # the same capital with a colon of its x-height: a label
    small[:, 30:40] = 255
    _colon(small, 24, (14, 3, 3), (20, 3, 3))
    assert find_prefix_end(small) == 27


class _FakeReader:
    """Reads a two-line crop as nonsense; line by line, the long top line as digits (sure, but not
    a name) and the short bottom line as a name."""

    def __init__(self, whole_confidence: float):
        self.whole_confidence = whole_confidence
        self.calls: list[int] = []

    def predict(self, crops, kinds):
        self.calls.append(len(crops))
        out = []
        for crop in crops:
            ink = np.flatnonzero((crop < 128).any(axis=0))
            if crop.shape[0] > 30:
                out.append(Reading("OAOBS", self.whole_confidence))
            elif ink[-1] - ink[0] > 150:
                out.append(Reading("0908585", 0.95))
            else:
                out.append(Reading("PEZOT", 0.6))
        return out, Timings()


def _two_lines() -> np.ndarray:
    crop = np.full((40, 300), 255, np.uint8)
    cv2.putText(crop, "0908585 0908", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1)
    cv2.putText(crop, "PEZOT", (60, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1)
    return crop


def test_a_doubtful_crop_of_two_lines_is_read_line_by_line():
    reader = _FakeReader(whole_confidence=LINE_RETRY_BELOW / 10)
    (result,), _ = read_crops([_two_lines()], reader, "name")
    assert reader.calls == [1, 2]
    assert result.text == "PEZOT" and result.confidence == 0.6  # the valid line, not the surer digits


def test_the_cut_off_foot_of_a_neighbouring_line_is_not_a_line_to_retry():
    crop = np.vstack([np.full((8, 300), 255, np.uint8), _two_lines()])
    cv2.line(crop, (20, 0), (250, 0), 0, 2)  # the foot of a line above, cut by the crop's edge
    assert len(text_lines(crop)) == 3 and len(main_lines(crop)) == 2
    reader = _FakeReader(whole_confidence=0.0)
    read_crops([crop], reader, "name")
    assert reader.calls == [1, 2]  # the foot is not read as a line of its own


def test_a_confident_crop_is_read_once_and_raw_reading_never_retries():
    sure = _FakeReader(whole_confidence=LINE_RETRY_BELOW * 2)
    (result,), _ = read_crops([_two_lines()], sure, "name")
    assert sure.calls == [1] and result.text == "OAOBS"
    doubtful = _FakeReader(whole_confidence=0.01)
    (raw,), _ = read_crops([_two_lines()], doubtful, "raw")
    assert doubtful.calls == [1] and raw.text == "OAOBS"


def test_real_crops_holding_the_line_above_or_below(shared_dir: Path):
    # "CODE RNE / UAI : 0621944" over "NOM : MEYER"; "PRENOM : INES" over the birth-date line.
    dev = shared_dir / "data" / "kaggle-names" / "dev"
    labels = pd.read_csv(dev / "labels.csv", keep_default_na=False).set_index("FILENAME")
    files = ["VALIDATION_1076.jpg", "VALIDATION_1083.jpg"]
    crops = [cv2.imread(str(dev / "images" / f), cv2.IMREAD_GRAYSCALE) for f in files]
    reader = load_reader(None, RecognizerSettings(device="cpu", threads=2, second_opinion="always", lexicon="bundled"))
    whole, _ = reader.predict(crops, ["name"] * len(crops))
    assert all(r.confidence < LINE_RETRY_BELOW for r in whole)
    results, _ = read_crops(crops, reader, "name")
    assert [r.text for r in results] == [labels.loc[f, "IDENTITY"] for f in files]
