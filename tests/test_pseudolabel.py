"""The pseudo-label keep rule: confidence (higher bar for unknown names) and, with two models, agreement."""

from __future__ import annotations

import pandas as pd

from train.pseudolabel import keep_mask


def _table(**extra) -> pd.DataFrame:
    return pd.DataFrame({"FILENAME": ["a", "b", "c", "d"], "IDENTITY": ["MARTIN", "XYZQ", "XYZQ", "LEA"],
                         "CONFIDENCE": [0.4, 0.8, 0.5, 0.2], "IN_LEXICON": [True, False, False, True], **extra})


def test_one_model_keeps_confident_readings_with_a_higher_bar_for_unknown_names():
    assert keep_mask(_table(), 0.3, 0.7).tolist() == [True, True, False, False]


def test_two_models_also_need_to_agree():
    table = _table(AGREE=[False, True, True, True])
    assert keep_mask(table, 0.3, 0.7).tolist() == [False, True, False, False]
