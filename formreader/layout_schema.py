"""The schema of a form layout (``template.json``'s ``layout``), checked by pydantic.

A layout is the customer's description of a form in millimetres. Everything the pipeline later
divides by, cuts with or writes as a column is checked here, once, so that a bad layout fails at
`template create` or `Template.load` with the field and the rule it breaks, never deep inside
`scan`. Rules: sizes positive and finite, every box inside the page, field names unique and not an
output column, known kinds. Extra top-level keys (``title``, notes) are kept; unknown keys inside a
field are refused (they are typos: ``undreline`` would silently do nothing).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from formreader.recognize.grammar import KINDS

FIELD_KINDS = KINDS  # recognize/grammar.py: each kind is a grammar
# Output columns every row has, and the suffixes of the per-field columns writers add.
RESERVED_COLUMNS = ("file", "page", "needs_review", "alignment", "error", "corrected")
RESERVED_SUFFIXES = ("_confidence", "_raw", "_alternatives")
MAX_PAGE_MM = 2000.0  # larger than A0: anything bigger is a unit mistake (inches? pixels?)
NAME_PATTERN = re.compile(r"^\w[\w-]*$")  # a column name and part of crop file names: no '/', ',', spaces

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Coordinate = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Size = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=MAX_PAGE_MM)]


class FieldModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64)]
    label: str = ""
    label_mm: tuple[Coordinate, Coordinate] = (0.0, 0.0)
    value_mm: tuple[Coordinate, Coordinate, Size, Size]  # x, y, width, height of the handwriting box
    kind: Literal[FIELD_KINDS] = "text"  # type: ignore[valid-type]
    underline: bool = False
    box: bool = False
    slashes_mm: list[Coordinate] = []  # printed separators, from the box's left edge
    fill: bool = True  # synth: fill this field (False: optional, filled at --optional-rate)
    choices: list[Annotated[str, Field(min_length=1)]] = []  # a closed list of values (recognize/grammar.py)

    @field_validator("name")
    @classmethod
    def _column_name(cls, name: str) -> str:
        if not NAME_PATTERN.match(name):
            raise ValueError("must be letters, digits, '_' or '-' (it becomes a column and part of file names)")
        low = name.lower()
        if low in RESERVED_COLUMNS or low.endswith(RESERVED_SUFFIXES):
            raise ValueError(f"{name!r} is reserved for an output column "
                             f"({', '.join(RESERVED_COLUMNS)}, or ending in {', '.join(RESERVED_SUFFIXES)})")
        return name

    @model_validator(mode="after")
    def _slashes_inside(self) -> FieldModel:
        width = self.value_mm[2]
        for dx in self.slashes_mm:
            if dx > width:
                raise ValueError(f"slashes_mm {dx:g} lies outside the box (width {width:g} mm)")
        return self


class PrintedText(BaseModel):
    text: str
    mm: tuple[Coordinate, Coordinate]
    size_mm: Size = 4.0
    bold: bool = False


class LayoutModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = ""
    page_mm: tuple[Size, Size]
    fields: Annotated[list[FieldModel], Field(min_length=1)]
    printed: list[PrintedText] = []
    rules: list[tuple[Coordinate, Coordinate, Coordinate, Coordinate]] = []
    boxes: list[tuple[Coordinate, Coordinate, Size, Size]] = []

    @model_validator(mode="after")
    def _inside_page_and_unique(self) -> LayoutModel:
        page_w, page_h = self.page_mm
        seen: dict[str, str] = {}
        for f in self.fields:
            x, y, w, h = f.value_mm
            if x + w > page_w or y + h > page_h:
                raise ValueError(f"field {f.name!r}: value_mm box [{x:g}, {y:g}, {w:g}, {h:g}] ends at "
                                 f"({x + w:g}, {y + h:g}) mm, outside the {page_w:g} x {page_h:g} mm page")
            if f.label_mm[0] > page_w or f.label_mm[1] > page_h:
                raise ValueError(f"field {f.name!r}: label_mm {list(f.label_mm)} is outside the page")
            key = f.name.casefold()
            if key in seen:
                raise ValueError(f"field {f.name!r}: duplicate name (already used by {seen[key]!r}; names ignore case)")
            seen[key] = f.name
        for i, (x, y, w, h) in enumerate(self.boxes):
            if x + w > page_w or y + h > page_h:
                raise ValueError(f"boxes[{i}] ends outside the page")
        return self


class TemplateFileModel(BaseModel):
    """template.json: format version, resolution of blank.png, and the layout."""

    version: Literal[1]
    dpi: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=10, le=2400)]
    layout: LayoutModel


def validate_layout(raw: Any, source: str) -> LayoutModel:
    return _validate(LayoutModel, raw, source)


def validate_template_file(raw: Any, source: str) -> TemplateFileModel:
    return _validate(TemplateFileModel, raw, source)


def _validate(model: type[BaseModel], raw: Any, source: str) -> BaseModel:
    from formreader.errors import TemplateError

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(e, raw) for e in exc.errors(include_url=False, include_input=False)]
        raise TemplateError(f"{source}: invalid layout:\n  " + "\n  ".join(dict.fromkeys(problems))) from None


def _describe(error: dict, raw: Any) -> str:
    """'field "DATE": value_mm[2]: must be > 0', from pydantic's location and message."""
    loc = list(error["loc"])
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    kind = error["type"]
    tuples = {"value_mm": "4 numbers [x, y, width, height]", "page_mm": "2 numbers [width, height]",
              "label_mm": "2 numbers [x, y]", "mm": "2 numbers [x, y]"}
    if len(loc) >= 2 and isinstance(loc[-1], int) and loc[-2] in tuples and kind in ("missing", "too_long"):
        loc, kind = loc[:-1], "too_short"  # a tuple with a number missing or one too many
    if kind in ("too_short", "too_long") and loc and loc[-1] in tuples:
        message = f"needs {tuples[loc[-1]]}"
    elif kind == "missing":
        message = "required"
    elif kind == "finite_number":
        message = "must be a finite number (not NaN or Infinity)"
    elif kind in ("float_type", "float_parsing"):
        message = "must be a number"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "must be a JSON object"
    elif kind == "extra_forbidden":
        message = "unknown key (typo?)"
    where = _where(loc, raw)
    return f"{where}: {message}" if where else message


def _where(loc: list, raw: Any) -> str:
    """Turn ('layout', 'fields', 2, 'value_mm', 3) into 'field "DATE" (fields[2]) value_mm[3]'."""
    parts: list[str] = []
    node = raw
    i = 0
    while i < len(loc):
        key = loc[i]
        child = node.get(key) if isinstance(node, dict) and isinstance(key, str) else None
        if key == "fields" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            index = loc[i + 1]
            entry = child[index] if isinstance(child, list) and index < len(child) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            parts.append(f"field {name!r} (fields[{index}])" if isinstance(name, str) else f"fields[{index}]")
            node, i = entry, i + 2
            continue
        if isinstance(key, int):
            parts[-1:] = [f"{parts[-1]}[{key}]"] if parts else [f"[{key}]"]
            node = node[key] if isinstance(node, list) and key < len(node) else None
        elif key != "layout" or parts:
            parts.append(str(key))
            node = child
        else:
            node = child
        i += 1
    return " ".join(parts)
