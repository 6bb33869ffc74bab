"""Fill a template's blank with handwriting, field by field, and remember what was written."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import cv2
import numpy as np

from formreader.synth.fonts import FontNames
from formreader.synth.handwriting import (
    CLASS_VALUES,
    TOWN_VALUES,
    Digits,
    Ink,
    random_birth_date,
    write_digits,
)
from formreader.template import FieldSpec, Template


class NameSource(Protocol):
    def sample(self, rng: np.random.Generator, field_name: str = "") -> Ink: ...


@dataclass(frozen=True)
class FillSettings:
    blank_rate: float = 0.03  # filled fields (NOM, PRENOM, DATE) left empty, so blank P/R is measurable
    optional_rate: float = 0.3  # `fill: false` fields (CLASSE, VILLE) that do get a value
    name_height_mm: tuple[float, float] = (5.0, 8.0)
    date_height_mm: tuple[float, float] = (4.5, 7.0)


@dataclass
class FilledForm:
    image: np.ndarray  # gray uint8 at the template's resolution
    truth: dict[str, str]  # field name -> expected value (names upper-case, dates ISO, "" blank)


def optional_values(spec: FieldSpec) -> tuple[str, ...]:
    """What a `fill: false` field may be given: the common classes its closed list holds, else
    towns (a free-text box)."""
    if spec.choices:
        return tuple(v for v in CLASS_VALUES if v in spec.choices) or spec.choices
    return TOWN_VALUES


class FormFiller:
    """Writes on a template's blank: names from `names`, dates from `digits`, optional fields
    (a class, a town: `optional_values`) with the handwriting fonts."""

    def __init__(self, template: Template, names: NameSource, digits: Digits, fonts: FontNames, settings: FillSettings = FillSettings()):
        self.template = template
        self.names = names
        self.digits = digits
        self.fonts = fonts
        self.settings = settings

    def fill(self, rng: np.random.Generator) -> FilledForm:
        page = self.template.blank.copy()
        truth: dict[str, str] = {}
        for spec in self.template.layout.fields:
            truth[spec.name] = self._fill_field(page, spec, rng)
        return FilledForm(page, truth)

    def _fill_field(self, page: np.ndarray, spec: FieldSpec, rng: np.random.Generator) -> str:
        if spec.fill and rng.random() < self.settings.blank_rate:
            return ""
        if not spec.fill:
            if rng.random() >= self.settings.optional_rate:
                return ""
            ink = self.fonts.write(str(rng.choice(optional_values(spec))), rng)
            self._paste(page, spec, ink.image, self.settings.name_height_mm, rng)
            return ink.text
        if spec.kind == "date":
            return self._write_date(page, spec, rng)
        ink = self.names.sample(rng, spec.name)
        self._paste(page, spec, ink.image, self.settings.name_height_mm, rng)
        return ink.text

    def _write_date(self, page: np.ndarray, spec: FieldSpec, rng: np.random.Generator) -> str:
        day = random_birth_date(rng)
        height = int(rng.uniform(*self.settings.date_height_mm) * self.template.px_per_mm)
        groups = [f"{day.day:02d}", f"{day.month:02d}", f"{day.year:04d}"]
        if len(spec.slashes_mm) >= 2:
            self._write_between_slashes(page, spec, groups, height, rng)
        else:
            ink = write_digits("/".join(groups), self.digits, rng, height)
            self._paste(page, spec, ink, None, rng)
        return day.isoformat()

    def _write_between_slashes(self, page: np.ndarray, spec: FieldSpec, groups: list[str], height: int, rng: np.random.Generator) -> None:
        """The form prints the separators: write each group in its own slot between them."""
        x, y, w, h = spec.value_mm
        cuts = [0.0, *sorted(spec.slashes_mm)[:2], w]
        for group, (a, b) in zip(groups, pairwise(cuts)):
            slot = FieldSpec(spec.name, "", (0, 0), (x + a + 1.2, y, max(b - a - 2.4, 2.0), h))
            self._paste(page, slot, write_digits(group, self.digits, rng, height), None, rng)

    def _paste(self, page: np.ndarray, spec: FieldSpec, ink: np.ndarray, height_mm: tuple[float, float] | None, rng: np.random.Generator) -> None:
        """Darkening multiply of the ink into the value box, resting just above its bottom line."""
        s = self.template.px_per_mm
        x0, y0, x1, y1 = self.template.mm_rect(spec.value_mm)
        scale = rng.uniform(*height_mm) * s / ink.shape[0] if height_mm else 1.0
        scale = min(scale, 0.97 * (x1 - x0) / ink.shape[1], 0.9 * (y1 - y0 + 2 * s) / ink.shape[0])
        w, h = max(1, int(ink.shape[1] * scale)), max(1, int(ink.shape[0] * scale))
        ink = cv2.resize(ink, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        slack = max(0, (x1 - x0) - w)
        # People start writing near the start of the line, rarely in the middle.
        left = x0 + int(rng.uniform(0.0, min(slack, 0.35 * (x1 - x0))))
        bottom = y1 - int(rng.uniform(0.4, 2.2) * s)
        top = max(bottom - h, 0)
        region = page[top : top + h, left : left + w]
        ink = ink[: region.shape[0], : region.shape[1]]
        region[...] = (region.astype(np.uint16) * ink // 255).astype(np.uint8)
