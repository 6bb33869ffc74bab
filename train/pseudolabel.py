"""`python -m train pseudolabel`: propose labels for the unlabelled Kaggle crops (self-training).

A crop is kept when the model is confident, and, if its reading is not a known name, only when
it is more confident (the lexicon covers ~65% of real names, so unknown names are not dropped,
just held to a higher bar). The defaults (0.3 / 0.7) were chosen on the labelled dev `train`
split, where readings above them were ~90-98% exact; `val` is not used.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from formreader.recognize.decoding import beam_decode
from train import sources
from train.evaluate import OnnxReader, resolve_lexicon
from train.metrics import name_form


def pseudolabel(model: Path, root: Path, output: Path, min_confidence: float, unknown_confidence: float) -> Path:
    import cv2

    reader = OnnxReader(model)
    lexicon = resolve_lexicon("default", root)
    paths = sources.unlabelled_paths(root)
    rows = []
    for start in range(0, len(paths), 512):
        chunk = paths[start:start + 512]
        images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in chunk]
        for path, probs in zip(chunk, reader.probs(images)):
            text, conf = beam_decode(probs, reader.spec.alphabet, lexicon=lexicon)
            text = name_form(text)
            known = lexicon is not None and text in lexicon
            rows.append((path.name, text if text else "EMPTY", round(conf, 4), known))
    table = pd.DataFrame(rows, columns=["FILENAME", "IDENTITY", "CONFIDENCE", "IN_LEXICON"])
    keep = (table.CONFIDENCE >= min_confidence) & (table.IN_LEXICON | (table.CONFIDENCE >= unknown_confidence))
    output.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(output.with_suffix(".all.csv"), index=False)
    kept = table[keep].copy()
    kept["IDENTITY"] = kept.IDENTITY.replace("EMPTY", "")
    kept.to_csv(output, index=False)
    print(f"kept {len(kept)} of {len(table)} crops ({kept.IN_LEXICON.mean():.0%} in lexicon) -> {output}")
    return output
