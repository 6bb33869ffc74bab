from __future__ import annotations

import pytest

from formreader.fields import make_field, normalize_name, parse_date


@pytest.mark.parametrize(
    "raw, expected",
    [("dupont", "DUPONT"), ("  jean  michel ", "JEAN MICHEL"), ("le-gall", "LE-GALL"), ("o'neil", "O'NEIL"),
     ("élodie", "ÉLODIE"), ("MARIE.", "MARIE"), ("-ANNE-", "ANNE"), ("6eme", "6EME"), ("", ""),
     ("DENIS--LECLERCQ", "DENIS--LECLERCQ"), ("DENIS- -LECLERCQ", "DENIS--LECLERCQ"), ("jean - pierre", "JEAN-PIERRE"),
     ("d 'arc", "D'ARC")],
)
def test_names_are_upper_case_and_clean(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    "raw, value, valid",
    [
        ("12/03/2011", "2011-03-12", True),
        ("1/2/1999", "1999-02-01", True),
        ("05.11.2008", "2008-11-05", True),
        ("05-11-2008", "2008-11-05", True),
        ("05112008", "2008-11-05", True),
        ("29/02/2012", "2012-02-29", True),
        ("03/04/85", "1985-04-03", True),
        ("31/02/2010", "31/02/2010", False),  # impossible: raw text kept, flagged
        ("29/02/2011", "29/02/2011", False),
        ("12/13/2010", "12/13/2010", False),
        ("12/03/2099", "2099-03-12", False),  # in the future: not a birth date
        ("1Z/O3/2O11", "1Z/O3/2O11", False),
        ("", "", True),
    ],
)
def test_dates_are_iso_and_validated(raw, value, valid):
    got, ok, note = parse_date(raw)
    assert (got, ok) == (value, valid)
    assert bool(note) == (not valid)


def test_make_field_dispatches_on_kind():
    assert make_field("DATE", "date", "12/03/2011", 0.9).text == "2011-03-12"
    bad = make_field("DATE", "date", "31/02/2011", 0.9)
    assert not bad.valid and bad.raw == "31/02/2011"
    assert make_field("NOM", "text", "martin", 0.5).text == "MARTIN"


def test_a_name_that_could_only_be_read_with_digits_is_invalid():
    field = make_field("NOM", "name", "J0HN", 0.999)
    assert not field.valid and "digits" in field.note and field.doubtful(0.5)
    assert make_field("CLASSE", "text", "6eme", 0.999).valid  # classes hold digits
