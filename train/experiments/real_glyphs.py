"""Real-glyph synthesis (issue 9, "also worth measuring"): letters cut from the labelled dev
`train` crops by CTC alignment, recombined into new names.

    python -m train.experiments.real_glyphs --out runs/glyphs --count 20000
    python -m train fit --config train/configs/student_glyphs.json --out runs/student_glyphs

1. Each dev `train` crop that the shipped CRNN reads exactly (greedy) is normalized as the model
   sees it (64 x 256, `formreader.preprocess.normalize_crop`) and its label is force-aligned to
   the CRNN's per-column probabilities (CTC Viterbi). Each character's frames give its position;
   the cut between two neighbours is the emptiest column between their positions.
2. Glyphs (ink columns only) go into a bank per character, with the writer's crop they came from.
3. A new crop: a name from the shared names list (`names.csv`, whose images are not in dev/),
   each letter a random glyph of that letter, spaced as one writer would (one spacing per name,
   jittered per gap), on white paper with a small margin. Names with a letter missing from the
   bank are skipped.

The crops are written as PNG with a `labels.csv` (FILENAME, IDENTITY), which the trainer reads
as its `corrections` source (train/sources.py `labelled_files`). Only dev `train` crops are cut:
`val` stays the measure.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from formreader.paths import shared_root
from formreader.preprocess import normalize_crop, to_batch
from formreader.recognize.predictor import RecognizerSettings, load_predictor
from train import sources
from train.text import clean_label

INK = 150  # canvas values below this are ink (the canvas is contrast-stretched to 0..255)


def viterbi_align(probs: np.ndarray, ids: list[int]) -> list[int] | None:
    """The frame each label character is emitted at (its first frame) on the best CTC path, or None."""
    T = probs.shape[0]
    ext = [0]
    for k in ids:
        ext += [k, 0]
    S = len(ext)
    if T < len(ids):
        return None
    logp = np.log(np.maximum(probs, 1e-12))
    score = np.full((T, S), -np.inf)
    back = np.zeros((T, S), np.int64)
    score[0, 0] = logp[0, ext[0]]
    if S > 1:
        score[0, 1] = logp[0, ext[1]]
    for t in range(1, T):
        for s in range(S):
            best, arg = score[t - 1, s], s
            if s >= 1 and score[t - 1, s - 1] > best:
                best, arg = score[t - 1, s - 1], s - 1
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2] and score[t - 1, s - 2] > best:
                best, arg = score[t - 1, s - 2], s - 2
            score[t, s] = best + logp[t, ext[s]]
            back[t, s] = arg
    end = S - 1 if score[T - 1, S - 1] >= score[T - 1, S - 2] else S - 2
    if not np.isfinite(score[T - 1, end]):
        return None
    path = [end]
    for t in range(T - 1, 0, -1):
        path.append(back[t, path[-1]])
    path.reverse()
    first: dict[int, int] = {}
    for t, s in enumerate(path):
        if s % 2 == 1 and s not in first:
            first[s] = t
    return [first[2 * i + 1] for i in range(len(ids))]


def cut_glyphs(canvas: np.ndarray, text: str, frames: list[int], stride: float) -> list[tuple[str, np.ndarray]]:
    """(character, glyph) for each ink blob (columns between empty ones) holding exactly one
    aligned character. Cursive letters that touch stay out: a cut through them would be a guess."""
    ink = (canvas < INK).sum(axis=0)
    cols = ink > 0
    blobs, x = [], 0
    while x < len(cols):
        if cols[x]:
            x0 = x
            while x < len(cols) and cols[x]:
                x += 1
            blobs.append((x0, x))
        x += 1
    owners: dict[int, list[str]] = defaultdict(list)
    for ch, f in zip(text, frames):
        if ch == " ":
            continue
        centre = (f + 0.5) * stride
        # the blob containing the emission column, else the nearest one (CTC fires near an edge)
        k = min(range(len(blobs)), key=lambda i: 0 if blobs[i][0] <= centre < blobs[i][1]
                else min(abs(centre - blobs[i][0]), abs(centre - blobs[i][1])))
        owners[k].append(ch)
    out = []
    for k, chars in owners.items():
        if len(chars) != 1:
            continue
        x0, x1 = blobs[k]
        glyph = canvas[:, x0:x1]
        rows = np.nonzero((glyph < INK).sum(axis=1))[0]
        # small printed label text ("NOM", "CODE") and specks: too short to be a handwritten capital
        if len(rows) == 0 or rows[-1] - rows[0] < 0.45 * canvas.shape[0] or not 3 <= x1 - x0 <= 64:
            continue
        out.append((chars[0], glyph))
    return out


def glyph_bank(root: Path) -> tuple[dict[str, list[np.ndarray]], int, int]:
    crnn = load_predictor(None, RecognizerSettings(device="cpu", threads=2))
    spec, alphabet = crnn.pre_processor.spec, crnn.post_processor.alphabet
    crops = sources.kaggle_split(root, "train", alphabet)
    bank: dict[str, list[np.ndarray]] = defaultdict(list)
    used = 0
    for image, text in zip(crops.images, crops.texts):
        if not text:
            continue
        arr = normalize_crop(image, spec)
        probs = crnn.model(to_batch([arr], spec))[0]
        best = probs.argmax(axis=1)
        keep = np.ones(len(best), bool)
        keep[1:] = best[1:] != best[:-1]
        if "".join(alphabet[k - 1] for k in best[keep] if k != 0) != text:
            continue  # an alignment is only trusted where the model reads the label
        frames = viterbi_align(probs, [alphabet.index(ch) + 1 for ch in text])
        if frames is None:
            continue
        canvas = arr * spec.std + spec.mean
        canvas = np.clip(canvas / spec.scale, 0, 255)
        if spec.invert:
            canvas = 255.0 - canvas
        for ch, glyph in cut_glyphs(canvas.astype(np.uint8), text, frames, spec.width / probs.shape[0]):
            bank[ch].append(glyph)
        used += 1
    return bank, used, len(crops)


def compose(name: str, bank: dict[str, list[np.ndarray]], rng: np.random.Generator) -> np.ndarray | None:
    if any(ch != " " and ch not in bank for ch in name):
        return None
    spacing = float(rng.choice([1.0, 4.0, 10.0]))  # one writer's habit: tight, normal or spaced capitals
    parts = []
    for i, ch in enumerate(name):
        if ch == " ":
            parts.append(np.full((64, int(rng.integers(16, 32))), 255, np.uint8))
            continue
        glyphs = bank[ch]
        parts.append(glyphs[int(rng.integers(len(glyphs)))])
        if i + 1 < len(name):
            parts.append(np.full((64, max(0, int(rng.normal(spacing, spacing / 3 + 0.5)))), 255, np.uint8))
    line = np.hstack(parts)
    margin = int(rng.integers(4, 12))
    return cv2.copyMakeBorder(line, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = shared_root(None)
    bank, used, total = glyph_bank(root)
    print(f"glyphs from {used} of {total} dev train crops: {sum(map(len, bank.values()))} glyphs, "
          f"{len(bank)} characters; fewest: " + ", ".join(f"{c}={len(g)}" for c, g in sorted(bank.items(), key=lambda kv: len(kv[1]))[:6]))
    rng = np.random.default_rng(args.seed)
    alphabet = load_predictor(None, RecognizerSettings(device="cpu")).post_processor.alphabet
    names = [n for n in (clean_label(x, alphabet) for x in sources.names_list(root)) if n]
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(args.out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["FILENAME", "IDENTITY"])
        while written < args.count:
            name = names[int(rng.integers(len(names)))]
            image = compose(name, bank, rng)
            if image is None:
                continue
            file = f"g{written:06d}.png"
            cv2.imwrite(str(args.out / file), image)
            out.writerow([file, name])
            written += 1
    print(f"{written} crops -> {args.out}")


if __name__ == "__main__":
    main()
