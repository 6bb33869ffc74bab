"""Known label errors of the Kaggle crops: applied by crop benchmarks, kept out of synthetic forms."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from formreader.benchmark.errata import KAGGLE_ERRATA, corrected, load_errata
from formreader.synth.handwriting import CropNames


def test_an_erratum_applies_only_to_its_file_and_label():
    errata = load_errata()
    assert len(errata) == len(pd.read_csv(KAGGLE_ERRATA)) >= 9
    assert corrected("VALIDATION_0567.jpg", "HATTHIEU", errata) == "MATTHIEU"
    assert corrected("VALIDATION_0567.jpg", "PAUL", errata) == "PAUL"  # another folder reusing the name
    assert corrected("VALIDATION_1448.jpg", "EMPTY", errata) == "CORNILY"


def _crop_folder(root, rows):
    (root / "images").mkdir(parents=True)
    for i, (name, _) in enumerate(rows):
        img = np.full((40, 200), 255, np.uint8)
        cv2.putText(img, f"NAME{i}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
        cv2.imwrite(str(root / "images" / name), img)
    pd.DataFrame(rows, columns=["FILENAME", "IDENTITY"]).to_csv(root / "labels.csv", index=False)


def test_synthetic_forms_leave_out_crops_whose_label_is_known_wrong(tmp_path):
    _crop_folder(tmp_path, [("VALIDATION_0567.jpg", "HATTHIEU"), ("VALIDATION_1343.jpg", "PAUL"), ("X.jpg", "ZOE")])
    names = CropNames.load(tmp_path, None)
    assert sorted(i.text for i in names.inks) == ["PAUL", "ZOE"]  # same file name, other label: kept
    assert names.mislabelled == 1


def test_every_erratum_names_a_real_val_crop(shared_dir):
    labels = pd.read_csv(shared_dir / "data/kaggle-names/dev/labels.csv", dtype=str, keep_default_na=False)
    given = set(zip(labels.FILENAME, labels.IDENTITY))
    assert set(load_errata()) <= given
    names = CropNames.load(shared_dir / "data/kaggle-names/dev", "val")
    assert names.mislabelled == 8  # the ninth (an EMPTY label) is never pasted: blanks are made on purpose
