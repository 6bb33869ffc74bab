"""The whole training chain on a tiny model: fit a few steps, resume, export, read with formreader.

Needs TensorFlow (the `train` extra) and the shared data; skips cleanly without them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "train" / "configs" / "tiny.json"


@pytest.fixture(scope="module")
def tiny_run(shared, tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    from train.__main__ import main

    out = tmp_path_factory.mktemp("run")
    main(["--data-root", str(shared), "fit", "--config", str(TINY), "--out", str(out)])
    return out


def _log_rows(run: Path) -> list[dict]:
    with (run / "log.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_fit_writes_log_checkpoint_and_curve(tiny_run):
    rows = _log_rows(tiny_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_cer", "val_exact"} <= set(rows[0])
    for name in ("last.keras", "last.weights.h5", "config.json", "curve.png"):
        assert (tiny_run / name).exists(), name


def test_fit_resumes_from_last_checkpoint(tiny_run, shared):
    from train.__main__ import main

    main(["--data-root", str(shared), "fit", "--config", str(TINY), "--out", str(tiny_run), "--set", "fit.epochs=3"])
    rows = _log_rows(tiny_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert int(rows[-1]["step"]) == 3 * int(rows[0]["step"])  # optimizer state came back too


def test_export_then_formreader_reads_a_crop(tiny_run, shared, tmp_path):
    import cv2

    from formreader.recognize.predictor import load_predictor
    from formreader.recognize.spec import METADATA_KEY
    from train.__main__ import main

    model = tmp_path / "tiny.onnx"
    main(["--data-root", str(shared), "export", "--run", str(tiny_run), "--output", str(model)])
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert METADATA_KEY in meta
    crop = cv2.imread(str(next((shared / "data" / "kaggle-names" / "dev" / "images").glob("*.jpg"))), cv2.IMREAD_GRAYSCALE)
    readings = load_predictor(model)([crop, crop])
    assert len(readings) == 2
    assert isinstance(readings[0].text, str) and 0.0 <= readings[0].confidence <= 1.0


def test_export_without_output_writes_into_the_run_not_over_the_shipped_model(tiny_run, shared):
    from train.__main__ import DEFAULT_MODEL, main

    shipped = DEFAULT_MODEL.read_bytes()
    main(["--data-root", str(shared), "export", "--run", str(tiny_run)])
    assert (tiny_run / "model.onnx").stat().st_size > 0
    assert DEFAULT_MODEL.read_bytes() == shipped


@pytest.mark.parametrize("shape", [(3, 3), (5, 9), (9, 5), (12, 9), (1, 40), (40, 300)])
def test_augment_never_returns_an_empty_crop(shape):
    import numpy as np

    from train.augment import augment

    rng = np.random.default_rng(0)
    for _ in range(100):
        out = augment(np.full(shape, 200, np.uint8), rng)
        assert out.size > 0 and out.dtype == np.uint8


def test_bilevel_augmentation_makes_black_and_white_crops_and_is_off_by_default():
    import numpy as np

    from train.augment import augment

    ramp = np.tile(np.linspace(40, 230, 60, dtype=np.float32), (24, 1)).astype(np.uint8)  # every grey level
    off = [augment(ramp, np.random.default_rng(s)) for s in range(20)]
    # bilevel=0 draws nothing more: configs without it train on exactly the crops they did before
    assert all((a == augment(ramp, np.random.default_rng(s), 1.0, 0.0)).all() for s, a in enumerate(off))
    on = [augment(ramp, np.random.default_rng(s), 1.0, 1.0) for s in range(20)]
    two_levels = [set(np.unique(a)) <= {0, 255} for a in on]
    assert sum(two_levels) >= 10  # the rest were resampled after thresholding: grey edges only
    assert not any(set(np.unique(a)) <= {0, 255} for a in off)


def test_training_dates_cover_every_calendar_day():
    # Days were drawn from 1-28, so no training date ever began with a 3 and the models read
    # 30 and 31 as 20 and 21 (or 230, 231).
    import datetime

    import numpy as np

    from train.synth import Synthesizer

    rng = np.random.default_rng(0)
    drawn = [Synthesizer.random_date(rng) for _ in range(4000)]
    assert {"29", "30", "31"} <= {day for day, _, _ in drawn}
    for day, month, year in drawn:
        datetime.date(int(year), int(month), int(day))  # a real calendar date
