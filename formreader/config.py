"""One typed configuration with one precedence: defaults < config file (TOML) < command line."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from formreader.align import AlignerSettings
from formreader.errors import ConfigError
from formreader.pipeline import PipelineSettings
from formreader.recognize.predictor import RecognizerSettings

PATH_KEYS = {"template", "model", "lexicon"}


@dataclass(frozen=True)
class Config:
    template: Path | None = None  # None: the bundled fiche-a template
    model: Path | None = None  # None: the bundled CRNN
    device: str = "auto"
    threads: int = 0
    batch_size: int = 64
    decoder: str = "greedy"
    beam_width: int = 10
    lexicon: Path | None = None
    second_opinion: str = "always"  # off | cascade | always (PP-OCRv5 next to the CRNN)
    cascade_below: float = 0.9
    dpi: float = 200.0
    max_pixels: int = 60_000_000
    # The lowest confidence at which the kept pages of 100 hard synthetic forms are 98% fully
    # right (0.9954, second opinion on; `formreader benchmark` prints it as "98% right": re-run
    # after changing a model). Dev val crops would need 0.9988, which keeps no hard page at all.
    # MODEL.md ("Auto-accept") has the curves.
    review_threshold: float = 0.995
    alignment_threshold: float = 0.55
    workers: int = 2

    def pipeline(self) -> PipelineSettings:
        return PipelineSettings(
            dpi=self.dpi,
            max_pixels=self.max_pixels,
            review_threshold=self.review_threshold,
            aligner=AlignerSettings(min_score=self.alignment_threshold),
        )

    def recognizer(self) -> RecognizerSettings:
        return RecognizerSettings(
            device=self.device,
            threads=self.threads,
            batch_size=self.batch_size,
            decoder=self.decoder,
            beam_width=self.beam_width,
            lexicon=self.lexicon,
            second_opinion=self.second_opinion,
            cascade_below=self.cascade_below,
        )


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if name in PATH_KEYS:
            return None if value in (None, "") else Path(value)
        if "int" in str(kind):
            return int(value)
        if "float" in str(kind):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: bad value for {name!r}: {value!r}") from exc


def load_config(file: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the file's `[formreader]` table (or top level), then non-None overrides."""
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    if file is not None:
        try:
            raw = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read config ({exc})") from exc
        table = raw.get("formreader", raw)
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"{file}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
        for key, value in table.items():
            value = _coerce(key, value, str(file))
            # Paths in a config file are relative to that file, never to the working directory.
            if key in PATH_KEYS and value is not None and not value.is_absolute():
                value = (Path(file).resolve().parent / value).resolve()
            values[key] = value
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, "command line")
    return dataclasses.replace(Config(), **values)
