"""The pseudo-label keep rule: confidence (higher bar for unknown names) and, with two models, agreement."""

from __future__ import annotations

import pandas as pd

from train.pseudolabel import keep_mask


def _table(**extra) -> pd.DataFrame:
    return pd.DataFrame({"FILENAME": ["a", "b", "c", "d"], "IDENTITY": ["MARTIN", "XYZQ", "XYZQ", "LEA"],
                         "CONFIDENCE": [0.4, 0.8, 0.5, 0.2], "IN_LEXICON": [True, False, False, True], **extra})


def test_one_model_keeps_confident_readings_with_a_higher_bar_for_unknown_names():
    assert keep_mask(_table(), 0.3, 0.7).tolist() == [True, True, False, False]


def test_two_models_also_need_to_agree():
    table = _table(AGREE=[False, True, True, True])
    assert keep_mask(table, 0.3, 0.7).tolist() == [False, True, False, False]


def test_the_ensemble_teacher_labels_agreeing_crops_as_the_run_time_reader_reads_them(shared, tmp_path):
    import cv2

    from formreader.recognize.ensemble import load_reader
    from formreader.recognize.predictor import RecognizerSettings
    from train.metrics import name_form
    from train.pseudolabel import ensemble_readings, _crops

    paths = _crops(shared, "train")[0][:12]
    partial = tmp_path / "teacher.partial.csv"
    table = ensemble_readings(None, paths, shared, partial, threads=1)
    assert table.FILENAME.tolist() == [p.name for p in paths]
    agree = table.CRNN == table.PPOCR
    assert agree.any() and (table.IDENTITY[~agree] == "").all()
    reader = load_reader(None, RecognizerSettings(device="cpu", threads=1, second_opinion="always",
                                                  lexicon=shared / "data" / "kaggle-names" / "names.csv"))
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
    readings, _ = reader.predict(images, ["name"] * len(images))
    for (_, row), reading in zip(table.iterrows(), readings):
        if row.CRNN == row.PPOCR:
            assert row.IDENTITY == name_form(reading.text)
    # a second run resumes: nothing is read again, the same table comes back
    again = ensemble_readings(None, paths, shared, partial, threads=1)
    assert again.drop(columns="AGREE").equals(table.drop(columns="AGREE"))
