"""`python -m train finetune`: adapt a shipped CRNN to an office's handwriting from corrected fields.

A clerk's corrections (CSV `file,page,field,value`, from the review page) name crops saved by
`formreader scan --crops DIR`; `formreader.pipeline.crop_path` finds each one. The model is
rebuilt from its ONNX file (`train.onnx_import`), trained a few epochs on the corrected crops
(augmented) mixed with a replay of its original training mix, so it keeps what it knew, and
exported again with its full metadata for `formreader scan --model NEW.onnx`.
"""

from __future__ import annotations

import csv
import re
import time
from dataclasses import replace
from pathlib import Path

from formreader.pipeline import crop_path
from train.config import RunConfig
from train.text import clean_label

# A short, gentle schedule (the base config's own is for training from scratch); --set overrides it.
FINETUNE_SCHEDULE = {"fit.epochs": 6, "fit.steps_per_epoch": 100, "fit.learning_rate": 3e-4,
                     "fit.min_learning_rate": 1e-5, "fit.warmup_steps": 20}
CORRECTION_COLUMNS = ("file", "page", "field", "value")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class FinetuneError(SystemExit):
    """Bad corrections or crops: the message names the file and row."""


def training_label(value: str) -> str:
    """Dates come back from scan as ISO; the form asks for (and people write) DD/MM/YYYY."""
    m = _ISO_DATE.match(value.strip())
    return f"{m.group(3)}/{m.group(2)}/{m.group(1)}" if m else value.strip()


def correction_rows(corrections: Path, crops: Path) -> list[tuple[str, str]]:
    """(crop path, label) for every corrected field; a missing crop is an error naming its row."""
    with corrections.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(CORRECTION_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise FinetuneError(f"{corrections}: missing column(s) {', '.join(sorted(missing))} "
                                f"(expected {','.join(CORRECTION_COLUMNS)})")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                page = int(row["page"])
            except ValueError:
                raise FinetuneError(f"{corrections}, line {line}: page {row['page']!r} is not a number") from None
            path = crop_path(crops, row["file"], page, row["field"])
            if not path.is_file():
                raise FinetuneError(f"{corrections}, line {line}: no crop for {row['file']} page {page} "
                                    f"field {row['field']} (expected {path}; was the scan run with --crops {crops}?)")
            rows.append((str(path.resolve()), training_label(row["value"])))
    return rows


def folder_rows(labels: Path, images: Path) -> list[tuple[str, str]]:
    """A plain crop folder + CSV (FILENAME, IDENTITY), as the Kaggle and pseudo-label tables."""
    with labels.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"FILENAME", "IDENTITY"} <= set(reader.fieldnames or []):
            raise FinetuneError(f"{labels}: expected columns FILENAME,IDENTITY")
        rows = [(str((images / r["FILENAME"]).resolve()), training_label(r["IDENTITY"])) for r in reader]
    absent = [p for p, _ in rows if not Path(p).is_file()]
    if absent:
        raise FinetuneError(f"{labels}: {len(absent)} listed crop(s) not found in {images}, e.g. {absent[0]}")
    return rows


def write_table(rows: list[tuple[str, str]], alphabet: str, path: Path) -> int:
    """The corrections source for training; labels outside the alphabet are dropped (counted)."""
    kept = [(f, clean_label(t, alphabet)) for f, t in rows]
    kept = [(f, t) for f, t in kept if t is not None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["FILENAME", "IDENTITY"])
        writer.writerows(kept)
    if len(kept) < len(rows):
        print(f"skipped {len(rows) - len(kept)} correction(s) with characters the model cannot write")
    return len(kept)


def finetune_config(base: RunConfig, share: float) -> RunConfig:
    """Corrections take `share` of every batch; the base config's mix (the replay) the rest."""
    replay = {k: v for k, v in base.data.mix.items() if v > 0 and k != "corrections"}
    total = sum(replay.values()) or 1.0
    mix = {k: (1 - share) * v / total for k, v in replay.items()}
    mix["corrections"] = share
    return replace(base, data=replace(base.data, mix=mix))


def finetune(model: Path, rows: list[tuple[str, str]], cfg: RunConfig, share: float, root: Path,
             run: Path, output: Path) -> Path:
    from train.fit import fit
    from train.onnx_export import export_run, max_difference
    from train.onnx_import import calibration_crops, config_from_onnx, keras_from_onnx

    t0 = time.time()
    run.mkdir(parents=True, exist_ok=True)
    cfg.model = config_from_onnx(model, cfg.model.dropout)
    count = write_table(rows, cfg.model.alphabet, run / "corrections.csv")
    if not count:
        raise FinetuneError("no usable corrections to learn from")
    init = run / "base.weights.h5"
    if not (run / "last.keras").exists():  # a re-run resumes from the run folder instead
        keras_model, cfg.model = keras_from_onnx(model, cfg.model, calibration_crops(root, cfg.model))
        x = calibration_crops(root, cfg.model, limit=16)
        if x is not None:
            print(f"rebuilt {model} in Keras: max |keras - onnx| = {max_difference(keras_model, model, x):.2e}")
        keras_model.save_weights(init)
    cfg = finetune_config(cfg, share)
    cfg.data.corrections = str(run / "corrections.csv")
    cfg.fit.init_weights = str(init)
    print(f"fine-tuning on {count} corrected crops ({share:.0%} of each batch) + replay "
          f"{ {k: round(v, 3) for k, v in cfg.data.mix.items() if k != 'corrections'} }")
    fit(cfg, root, run)
    export_run(run, output, "last.weights.h5", root)
    print(f"fine-tuned model -> {output} in {time.time() - t0:.0f} s; use it with: formreader scan ... --model {output}")
    return output
