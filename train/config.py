"""Run configuration: model shape, data mix and schedule, loaded from a JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from formreader.recognize.spec import DEFAULT_ALPHABET


@dataclass
class ModelConfig:
    height: int = 64
    width: int = 256
    alphabet: str = DEFAULT_ALPHABET
    # Each conv block: [filters, pool_h, pool_w]; pool 1 = no pooling on that axis.
    conv_blocks: list[list[int]] = field(
        default_factory=lambda: [[32, 2, 2], [64, 2, 2], [128, 2, 1], [128, 2, 1], [256, 2, 1]]
    )
    proj_units: int = 256  # dense projection of each column before the BiLSTM
    lstm_units: list[int] = field(default_factory=lambda: [128, 128])
    dropout: float = 0.25
    # Field kinds the exported model is an expert for (written into its metadata); [] = general.
    kinds: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    # Relative sampling weights of the training sources (normalized at run time).
    mix: dict[str, float] = field(
        default_factory=lambda: {
            "kaggle": 0.35, "pseudo": 0.0, "synth_name": 0.3, "synth_date": 0.05,
            "mnist_date": 0.1, "dhsd": 0.1, "htr_lines": 0.1,
        }
    )
    pseudo_labels: str = ""  # CSV (FILENAME, IDENTITY) of pseudo-labelled unlabelled crops
    corrections: str = ""  # CSV (FILENAME, IDENTITY): crop paths (absolute or beside the CSV), e.g. a clerk's fixes
    mnist_reserved: int = 10000  # last N MNIST images: date evaluation only
    blank_fraction: float = 0.04  # share of synthetic name crops that are blank fields
    bilevel_fraction: float = 0.0  # share of augmented crops thresholded to black and white (B&W scans)
    max_label_len: int = 32


@dataclass
class FitConfig:
    seed: int = 1
    batch_size: int = 64
    steps_per_epoch: int = 500
    epochs: int = 20
    learning_rate: float = 1e-3
    min_learning_rate: float = 2e-5
    warmup_steps: int = 300
    workers: int = 1  # sample-generation processes (0 = in-process)
    val_limit: int = 0  # 0 = the whole dev val split
    max_minutes: float = 0.0  # stop (resumably) after this long; 0 = no limit
    stop_at_epoch: int = 0  # stop (resumably) once this epoch is done, e.g. to pseudo-label; 0 = never
    init_weights: str = ""  # start from these weights (fine-tuning); ignored when resuming


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)


def _build(cls: type, raw: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**raw)


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a JSON run config; `overrides` maps 'section.key' to a value (CLI --set)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        raw.setdefault(section, {})[key] = value
    return RunConfig(
        model=_build(ModelConfig, raw.get("model", {})),
        data=_build(DataConfig, raw.get("data", {})),
        fit=_build(FitConfig, raw.get("fit", {})),
    )
