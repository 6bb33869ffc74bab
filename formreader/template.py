"""Form templates: a customer's field layout plus the blank page it describes.

A template directory holds ``template.json`` (the layout, in millimetres, as the customer wrote
it, plus the resolution of the blank) and ``blank.png`` (the blank form, gray, at that resolution).
Nothing here knows about any particular form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from formreader.errors import TemplateError
from formreader.recognize.grammar import KINDS

TEMPLATE_FILE = "template.json"
BLANK_FILE = "blank.png"
TEMPLATE_VERSION = 1
DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parent / "assets" / "templates" / "fiche-a"


def _kind(value) -> str:
    """A layout's field kind ("text" when absent, as in layouts written before kinds existed)."""
    if value is None:
        return "text"
    if value not in KINDS:
        raise TemplateError(f"unknown field kind {value!r} (choose {', '.join(KINDS)})")
    return value


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    label_mm: tuple[float, float]
    value_mm: tuple[float, float, float, float]  # x, y, w, h of the handwriting box
    kind: str = "text"  # "text" (free), "name", "date" or "digits" (recognize/grammar.py)
    underline: bool = False
    box: bool = False
    slashes_mm: tuple[float, ...] = ()
    fill: bool = True
    choices: tuple[str, ...] = ()  # a closed list of values (upper case), e.g. school classes

    @classmethod
    def from_dict(cls, raw: dict) -> "FieldSpec":
        return cls(
            name=str(raw["name"]),
            label=str(raw.get("label", "")),
            label_mm=tuple(raw.get("label_mm", (0.0, 0.0))),
            value_mm=tuple(float(v) for v in raw["value_mm"]),
            kind=_kind(raw.get("kind")),
            underline=bool(raw.get("underline", False)),
            box=bool(raw.get("box", False)),
            slashes_mm=tuple(float(v) for v in raw.get("slashes_mm", ())),
            fill=bool(raw.get("fill", True)),
            choices=tuple(str(c).strip().upper() for c in raw.get("choices", ())),
        )


@dataclass(frozen=True)
class Layout:
    name: str
    page_mm: tuple[float, float]
    fields: tuple[FieldSpec, ...]
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @classmethod
    def from_dict(cls, raw: dict, source: str = "layout") -> "Layout":
        try:
            fields = tuple(FieldSpec.from_dict(f) for f in raw["fields"])
            page = (float(raw["page_mm"][0]), float(raw["page_mm"][1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TemplateError(f"{source}: not a valid layout ({exc!r})") from exc
        if not fields:
            raise TemplateError(f"{source}: layout has no fields")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise TemplateError(f"{source}: duplicate field names in {names}")
        return cls(name=str(raw.get("name", Path(source).stem)), page_mm=page, fields=fields, raw=raw)

    @classmethod
    def load(cls, path: Path) -> "Layout":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TemplateError(f"{path}: cannot read layout ({exc})") from exc
        return cls.from_dict(raw, str(path))


@dataclass(frozen=True)
class Template:
    layout: Layout
    blank: np.ndarray = field(repr=False, compare=False)  # gray uint8
    dpi: float

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def px_per_mm(self) -> float:
        return self.dpi / 25.4

    def mm_rect(self, rect_mm: tuple[float, float, float, float], margin_mm: float = 0.0) -> tuple[int, int, int, int]:
        """Millimetre rectangle (x, y, w, h) -> clipped pixel box (x0, y0, x1, y1) on the blank."""
        s = self.px_per_mm
        x, y, w, h = rect_mm
        h_img, w_img = self.blank.shape[:2]
        x0 = int(round((x - margin_mm) * s))
        y0 = int(round((y - margin_mm) * s))
        x1 = int(round((x + w + margin_mm) * s))
        y1 = int(round((y + h + margin_mm) * s))
        return max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)

    @cached_property
    def printed_ink(self) -> np.ndarray:
        """Mask of everything printed on the blank form (labels, lines, boxes, separators)."""
        blur = cv2.GaussianBlur(self.blank, (3, 3), 0)
        _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        return mask

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"version": TEMPLATE_VERSION, "dpi": self.dpi, "layout": self.layout.raw}
        (directory / TEMPLATE_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        if not cv2.imwrite(str(directory / BLANK_FILE), self.blank):
            raise TemplateError(f"{directory}: cannot write {BLANK_FILE}")
        return directory

    @classmethod
    def load(cls, directory: Path | None = None) -> "Template":
        directory = Path(directory) if directory is not None else DEFAULT_TEMPLATE_DIR
        meta_path = directory / TEMPLATE_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TemplateError(f"{meta_path}: cannot read template ({exc})") from exc
        if meta.get("version") != TEMPLATE_VERSION:
            raise TemplateError(f"{meta_path}: template version {meta.get('version')}, expected {TEMPLATE_VERSION}")
        blank = cv2.imread(str(directory / BLANK_FILE), cv2.IMREAD_GRAYSCALE)
        if blank is None:
            raise TemplateError(f"{directory / BLANK_FILE}: missing or unreadable blank image")
        layout = Layout.from_dict(meta["layout"], str(meta_path))
        return cls(layout=layout, blank=blank, dpi=float(meta["dpi"]))


def create_template(blank_path: Path, layout_path: Path, dpi: float = 200.0) -> Template:
    """Build a template from a blank form (PDF or image) and its layout JSON."""
    from formreader.ingest import read_pages  # ingest knows every input format

    layout = Layout.load(layout_path)
    pages = read_pages(Path(blank_path), dpi=dpi)
    if not pages or pages[0].error or pages[0].image is None:
        cause = pages[0].error if pages else "no page"
        raise TemplateError(f"{blank_path}: cannot read blank form ({cause})")
    blank = pages[0].image
    # The blank's real resolution follows from its pixel width and the layout's page width.
    px_dpi = blank.shape[1] / layout.page_mm[0] * 25.4
    return Template(layout=layout, blank=blank, dpi=px_dpi)
