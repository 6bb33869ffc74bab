"""What a recognizer model file says about itself.

The ONNX file carries one metadata entry, ``formreader.spec``: the JSON of :class:`ModelSpec`.
Training writes it at export; the runtime reads it and refuses anything it does not understand,
so a model and the code that feeds it can never silently disagree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from formreader.errors import ModelError
from formreader.preprocess import InputSpec

FORMAT_VERSION = 1
METADATA_KEY = "formreader.spec"

# Index 0 of the model output is the CTC blank; character i of the alphabet is class i + 1.
DEFAULT_ALPHABET = (
    " '-./0123456789"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "abcdefghijklmnopqrstuvwxyz"
    "ÀÂÄÆÇÈÉÊËÎÏÔÖŒÙÛÜŸ"
    "àâäæçèéêëîïôöœùûüÿ"
)


class ModelSpecError(ModelError):
    """The model file's metadata is missing, malformed or of an unsupported version."""


@dataclass(frozen=True)
class ModelSpec:
    alphabet: str = DEFAULT_ALPHABET  # character i is class i + 1
    input: InputSpec = field(default_factory=InputSpec)
    format_version: int = FORMAT_VERSION
    blank_index: int = 0
    name: str = "crnn"
    # The field kinds this model is an expert for (e.g. ("date",): read next to the general model
    # on date fields only); empty: a general model for every field.
    kinds: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.alphabet) + 1

    def to_json(self) -> str:
        raw = asdict(self)
        raw["kinds"] = list(self.kinds)
        return json.dumps(raw, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelSpec":
        try:
            raw = json.loads(text)
            version = int(raw["format_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelSpecError(f"{source}: unreadable {METADATA_KEY} metadata ({exc})") from exc
        if version != FORMAT_VERSION:
            raise ModelSpecError(
                f"{source}: model format version {version}, this formreader reads version {FORMAT_VERSION}"
            )
        try:
            spec = cls(
                alphabet=str(raw["alphabet"]),
                input=InputSpec(**raw["input"]),
                format_version=version,
                blank_index=int(raw.get("blank_index", 0)),
                name=str(raw.get("name", "crnn")),
                kinds=tuple(str(k) for k in raw.get("kinds", ())),
            )
        except (KeyError, TypeError) as exc:
            raise ModelSpecError(f"{source}: incomplete {METADATA_KEY} metadata ({exc})") from exc
        spec.validate(source)
        return spec

    def validate(self, source: str = "model") -> None:
        if len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet:
            raise ModelSpecError(f"{source}: alphabet is empty or has repeated characters")
        if self.input.layout not in ("NHWC", "NCHW"):
            raise ModelSpecError(f"{source}: unknown input layout {self.input.layout!r}")
        if self.blank_index != 0:
            raise ModelSpecError(f"{source}: CTC blank must be class 0, got {self.blank_index}")
        from formreader.recognize.grammar import KINDS

        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ModelSpecError(f"{source}: expert for unknown field kind(s) {', '.join(unknown)} (known: {', '.join(KINDS)})")
        if self.input.height < 8 or self.input.width < 8:
            raise ModelSpecError(f"{source}: input size {self.input.height}x{self.input.width} too small")
