"""How registration behaves as scans get worse: success rate and field offset per perturbation.

    python benchmarks/alignment_stress.py [--pages 10]

Draws filled fiche-a forms, perturbs them (rotation, scale, shift, blur, noise, JPEG, resolution)
and reports, per level, how many pages align, their mean score and the mean pixel error of the
recovered field boxes (200 dpi template pixels).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from formreader.align import Aligner  # noqa: E402
from formreader.template import Template  # noqa: E402
from tests.forms import Scan, fill, scan  # noqa: E402

LEVELS = {
    "clean": dict(),
    "issue limits: rot 5, scale 8%, shift 5%": dict(angle=5, scale=1.08, shift=(0.05, 0.05)),
    "limits + blur 5 + noise 12 + jpeg 30": dict(angle=-5, scale=0.92, shift=(-0.05, 0.05), blur=5, noise=12, jpeg=30),
    "150 dpi + limits + noise": dict(angle=5, scale=0.92, dpi_factor=0.75, blur=3, noise=10, jpeg=40),
    "300 dpi + limits": dict(angle=-5, scale=1.08, dpi_factor=1.5, shift=(0.05, -0.05)),
    "beyond: rot 10": dict(angle=10),
    "beyond: rot 15": dict(angle=15),
    "beyond: scale 0.8": dict(scale=0.8),
    "beyond: shift 15%": dict(shift=(0.15, 0.1)),
    "beyond: blur 11 + noise 30 + jpeg 10": dict(blur=11, noise=30, jpeg=10),
    "beyond: 100 dpi + blur 5": dict(dpi_factor=0.5, blur=5),
    "upside down": dict(angle=180),
}




def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=10)
    args = ap.parse_args()
    template = Template.load()
    aligner = Aligner(template)
    names = ["DUPONT", "MARTIN", "LEFEBVRE", "N'DIAYE", "GARCIA-LOPEZ"]
    rng = np.random.default_rng(0)
    print(f"{'perturbation':44s} aligned  score  field-px-err  ms/page")
    for label, kw in LEVELS.items():
        ok, scores, errs, secs = 0, [], [], []
        for i in range(args.pages):
            values = {"NOM": names[i % 5], "PRENOM": names[(i + 2) % 5], "DATE": f"{1 + i % 28:02d}/0{1 + i % 9}/2010"}
            page = fill(template, values)
            params = dict(kw)
            if "angle" in params:  # vary the sign and a little of the size of each perturbation
                params["angle"] = params["angle"] * rng.choice([-1, 1]) * rng.uniform(0.9, 1.0)
            t0 = time.perf_counter()
            result = aligner.align(scan(page, Scan(**params), seed=i))
            secs.append(time.perf_counter() - t0)
            scores.append(result.score)
            if result.ok:
                ok += 1
                errs.append(field_error(template, page, result.image))
        err = f"{np.mean(errs):6.2f}" if errs else "   n/a"
        print(f"{label:44s} {ok:3d}/{args.pages:<3d} {np.mean(scores):6.2f}  {err:>12s}  {1000 * np.mean(secs):7.0f}")


def field_error(template: Template, page: np.ndarray, aligned: np.ndarray) -> float:
    """Mean shift (px) between the original and recovered field boxes, by phase correlation."""
    shifts = []
    for spec in template.layout.fields:
        x0, y0, x1, y1 = template.mm_rect(spec.value_mm, 4.0)
        a = page[y0:y1, x0:x1].astype(np.float32)
        b = aligned[y0:y1, x0:x1].astype(np.float32)
        if a.std() < 5:
            continue
        (dx, dy), _ = cv2.phaseCorrelate(a, b)
        shifts.append(float(np.hypot(dx, dy)))
    return float(np.mean(shifts)) if shifts else 0.0


if __name__ == "__main__":
    main()
