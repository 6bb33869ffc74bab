"""How well and how fast formreader reads a labelled set: metrics, report, Tesseract baseline.

`sets` loads form sets (truth.csv) and crop sets (Kaggle labels.csv); `runner` reads them with
the same Scanner/Predictor as `formreader scan`; `metrics` scores; `report` writes JSON, PNG and
HTML; `tesseract` is the baseline. `alignment` (`python -m formreader.benchmark.alignment`)
measures registration under degraded scans. Every benchmark of the project lives in this package.
"""
