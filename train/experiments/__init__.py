"""Training experiments run by hand and reported in MODEL.md (need the train extra and ../shared)."""
