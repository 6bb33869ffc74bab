"""Synthetic labelled form sets: real or font handwriting on a template, through a simulated scan.

`build_filler` wires the handwriting sources found under the shared data folder to a template;
`write_form_set` turns a filler into files plus `truth.csv`.
"""

from __future__ import annotations

from pathlib import Path

from formreader.errors import ConfigError, InputError
from formreader.synth.fonts import FontNames
from formreader.synth.forms import FillSettings, FormFiller
from formreader.synth.formset import FORMATS, SetSpec, write_form_set
from formreader.synth.handwriting import NAME_SOURCES, CropNames, Digits
from formreader.synth.scan import PRESETS, preset
from formreader.template import Template

__all__ = ["FORMATS", "NAME_SOURCES", "PRESETS", "FillSettings", "FormFiller", "SetSpec", "build_filler", "preset", "write_form_set"]

KAGGLE_DEV = Path("data/kaggle-names/dev")
MNIST = Path("data/digits/mnist_train.npz")
FONTS = Path("fonts")


def build_filler(template: Template, data_root: Path, names: str = "kaggle-val", digits: str = "reserved",
                 settings: FillSettings | None = None) -> FormFiller:
    """A filler for `template` with the named handwriting sources under `data_root`."""
    if names not in NAME_SOURCES:
        raise ConfigError(f"unknown name source {names!r} (choose {', '.join(NAME_SOURCES)})")
    root = Path(data_root)
    if not root.is_dir():
        raise InputError(f"{root}: shared data folder not found (use --data-root or FORMREADER_SHARED)")
    fonts = FontNames.load(root / FONTS)
    source = fonts if names == "fonts" else CropNames.load(root / KAGGLE_DEV, names.split("-", 1)[1])
    return FormFiller(template, source, Digits.load(root / MNIST, digits), fonts, settings or FillSettings())
