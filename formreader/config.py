"""One typed configuration with one precedence: defaults < config file (TOML) < command line."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from formreader.align import AlignerSettings
from formreader.errors import ConfigError
from formreader.pipeline import PipelineSettings
from formreader.recognize.ensemble import expert_paths
from formreader.recognize.predictor import RecognizerSettings

PATH_KEYS = {"template", "model", "lexicon"}
WORDS = {"lexicon": ("bundled", "none")}  # values of a path setting that are not paths


@dataclass(frozen=True)
class Config:
    template: Path | None = None  # None: the bundled fiche-a template
    model: Path | None = None  # None: the bundled CRNN
    device: str = "auto"
    threads: int = 0
    # Recognizer and pipeline defaults live with their settings (one place to change them).
    batch_size: int = RecognizerSettings.batch_size
    decoder: str = "greedy"
    beam_width: int = 10
    # bundled | none | a names list. The names prior is an application default, not a model one:
    # a bare `load_predictor` reads without it (RecognizerSettings.lexicon is None).
    lexicon: Path | str = "bundled"
    second_opinion: str = RecognizerSettings.second_opinion
    cascade_below: float = RecognizerSettings.cascade_below
    experts: str = RecognizerSettings.experts  # bundled | none | model files separated by commas
    dpi: float = 200.0
    max_pixels: int = 60_000_000
    review_threshold: float = PipelineSettings.review_threshold
    alignment_threshold: float = 0.55
    workers: int = 2
    engine: str = "local"  # local (threads + one recognizer) | ray (Ray Data, one machine or a cluster)
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a Ray started for this run

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
            experts=self.experts,
        )


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if name in WORDS and (value in (None, "") or str(value).strip().lower() in WORDS[name]):
            return str(value or "none").strip().lower()
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
            if isinstance(value, Path) and not value.is_absolute():
                value = (Path(file).resolve().parent / value).resolve()
            if key == "experts":
                value = _files_beside(value, Path(file))
            values[key] = value
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, "command line")
    return validate(dataclasses.replace(Config(), **values))


def _files_beside(experts: str, file: Path) -> str:
    """The `experts` setting of a config file: its model files relative to that file."""
    if experts.strip() in ("bundled", "none", ""):
        return experts
    base = file.resolve().parent
    return ",".join(str((base / p).resolve()) for p in expert_paths(experts))


MAX_THREADS_PER_CORE = 4  # --threads / workers above 4 x cores only thrash (10000 threads hung the machine)
DPI_RANGE = (50.0, 1200.0)
BATCH_RANGE = (1, 4096)
MAX_PIXELS_RANGE = (100_000, 1_000_000_000)


def validate(cfg: Config) -> Config:
    """Refuse settings that would make nonsense rows or hang the machine, before any work."""
    cores = os.cpu_count() or 1
    problems = []

    def number(name: str, low: float, high: float, what: str = "") -> None:
        value = getattr(cfg, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
            problems.append(f"{name} must be {what or f'between {low:g} and {high:g}'} (got {value!r})")

    number("threads", 0, MAX_THREADS_PER_CORE * cores, f"0 (all cores) to {MAX_THREADS_PER_CORE * cores} (4 x {cores} cores)")
    number("workers", 1, MAX_THREADS_PER_CORE * cores, f"1 to {MAX_THREADS_PER_CORE * cores} (4 x {cores} cores)")
    number("batch_size", *BATCH_RANGE)
    number("beam_width", 1, 1000)
    number("dpi", *DPI_RANGE, f"between {DPI_RANGE[0]:g} and {DPI_RANGE[1]:g} dpi")
    number("max_pixels", *MAX_PIXELS_RANGE)
    number("review_threshold", 0.0, 1.0)
    number("alignment_threshold", 0.0, 1.0)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg
