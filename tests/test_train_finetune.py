"""Keras <-> ONNX round trip of the CRNN, and `python -m train finetune` from a clerk's corrections.

Needs TensorFlow (the `train` extra); the shipped-model check and the fine-tune run also need the
shared data (real crops, the replay mix) and skip cleanly without them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "formreader" / "assets" / "models" / "crnn.onnx"
TINY = ROOT / "train" / "configs" / "tiny.json"


def _tiny_keras(seed: int = 0):
    """A tiny CRNN with random weights and non-trivial batch-norm statistics."""
    import keras

    from train.config import load_config
    from train.model import build_crnn

    cfg = load_config(TINY).model
    keras.utils.set_random_seed(seed)
    model = build_crnn(cfg)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("bn"):
            c = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c), rng.normal(0, 0.5, c), rng.uniform(0.2, 3, c)])
    return cfg, model


def test_export_then_import_gives_the_same_function(tmp_path):
    from train.onnx_export import keras_weights, write_onnx
    from train.onnx_import import config_from_onnx, keras_from_onnx

    cfg, original = _tiny_keras()
    path = write_onnx(cfg, keras_weights(original), tmp_path / "tiny.onnx")
    inferred = config_from_onnx(path)
    assert (inferred.conv_blocks, inferred.proj_units, inferred.lstm_units) == (cfg.conv_blocks, cfg.proj_units, cfg.lstm_units)
    x = np.random.default_rng(1).random((6, cfg.height, cfg.width, 1), np.float32)
    rebuilt, _ = keras_from_onnx(path, cfg, calibration=x)
    want = np.asarray(original.predict(x, verbose=0))
    got = np.asarray(rebuilt.predict(x, verbose=0))
    assert np.abs(want - got).max() < 1e-4
    # The re-split batch norm carries the calibration statistics, not identity ones.
    mean = rebuilt.get_layer("bn0").get_weights()[2]
    assert np.abs(mean).max() > 1e-3


def test_keras_rebuilt_from_shipped_model_matches_it_on_real_crops(shared):
    from train.config import load_config
    from train.fit import load_val
    from train.onnx_export import max_difference
    from train.onnx_import import calibration_crops, keras_from_onnx

    cfg = load_config(ROOT / "train" / "configs" / "full.json", {"fit.val_limit": 64})
    model, model_cfg = keras_from_onnx(SHIPPED, cfg.model, calibration_crops(shared, cfg.model, limit=64))
    assert model_cfg.conv_blocks == cfg.model.conv_blocks
    x, _ = load_val(cfg, shared)
    assert len(x) == 64
    assert max_difference(model, SHIPPED, x) < 1e-4


def _write_crop(path: Path, text: str) -> None:
    import cv2

    image = np.full((60, 40 + 22 * len(text)), 235, np.uint8)
    cv2.putText(image, text, (12, 42), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.0, 30, 2, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def _corrections(tmp_path: Path) -> tuple[Path, Path]:
    from formreader.pipeline import crop_path

    crops = tmp_path / "crops"
    rows = [("/scans/office/a.pdf", 1, "NOM", "MARTIN"), ("/scans/office/a.pdf", 1, "PRENOM", "LEA"),
            ("/scans/office/a.pdf", 2, "NOM", "DUPONT"), ("/scans/b.jpg", 1, "DATE", "1984-03-07")]
    for file, page, field, value in rows:
        _write_crop(crop_path(crops, file, page, field), value)
    table = tmp_path / "corrections.csv"
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "page", "field", "value"])
        writer.writerows(rows)
    return table, crops


def test_finetune_from_corrections_writes_a_model_formreader_loads(shared, tmp_path):
    import onnx

    from formreader.recognize.predictor import load_predictor
    from formreader.recognize.spec import METADATA_KEY
    from train.__main__ import main
    from train.onnx_export import keras_weights, write_onnx

    cfg, base_keras = _tiny_keras()
    base = write_onnx(cfg, keras_weights(base_keras), tmp_path / "base.onnx")
    table, crops = _corrections(tmp_path)
    output, run = tmp_path / "office.onnx", tmp_path / "run"
    main(["--data-root", str(shared), "finetune", "--corrections", str(table), "--crops", str(crops),
          "--model", str(base), "--output", str(output), "--run", str(run),
          "--set", "fit.epochs=1", "--set", "fit.steps_per_epoch=3", "--set", "fit.batch_size=4",
          "--set", "fit.workers=0", "--set", "fit.val_limit=8", "--set", "fit.warmup_steps=1",
          "--set", 'data.mix={"kaggle": 1.0}'])

    with (run / "corrections.csv").open() as fh:
        labels = [r["IDENTITY"] for r in csv.DictReader(fh)]
    assert labels == ["MARTIN", "LEA", "DUPONT", "07/03/1984"]  # ISO dates back to the written form
    with (run / "log.csv").open() as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [3]

    def meta(path: Path) -> str:
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}[METADATA_KEY]

    def weights(path: Path) -> dict:
        return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    assert meta(output) == meta(base)
    before, after = weights(base), weights(output)
    assert before.keys() == after.keys()
    assert any(not np.allclose(before[k], after[k]) for k in before)  # it did train
    readings = load_predictor(output)([np.full((40, 120), 230, np.uint8)])
    assert len(readings) == 1 and 0.0 <= readings[0].confidence <= 1.0


def test_finetune_names_a_correction_whose_crop_is_missing(tmp_path):
    from train.finetune import FinetuneError, correction_rows

    table, crops = _corrections(tmp_path)
    with table.open("a", newline="") as fh:
        csv.writer(fh).writerow(["/scans/c.pdf", 3, "NOM", "ROUX"])
    with pytest.raises(FinetuneError, match=r"line 6: no crop for /scans/c.pdf page 3 field NOM"):
        correction_rows(table, crops)
