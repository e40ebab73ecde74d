"""SQuAD-official EM/F1 normalisation and the answer-in-context rate."""
import pytest

from eval.qa_metrics import (answer_in_context, exact_match, normalize_answer, qa_scores,
                             strip_citations, token_f1)


@pytest.mark.parametrize("raw, norm", [
    ("The Denver Broncos!", "denver broncos"),
    ("  an   Apple, a day ", "apple day"),
    ("Theatre of the absurd", "theatre of absurd"),   # 'the' inside a word stays
    ("U.S.A.", "usa"),
    ("", ""),
])
def test_normalize_like_the_official_script(raw, norm):
    assert normalize_answer(raw) == norm


def test_em_and_f1():
    assert exact_match("the Broncos", "Broncos") == 1.0
    assert exact_match("Denver Broncos", "Broncos") == 0.0
    # pred {denver, broncos}, ref {broncos}: P = 1/2, R = 1 -> F1 = 2/3
    assert token_f1("Denver Broncos", "Broncos") == pytest.approx(2 / 3)
    assert token_f1("Carolina", "Broncos") == 0.0
    assert token_f1("", "Broncos") == 0.0


def test_citations_are_not_part_of_the_answer():
    assert strip_citations("Denver Broncos [2].") == "Denver Broncos ."
    s = qa_scores("Denver Broncos [1, 3]", ["Denver Broncos", "Broncos"], ["x"])
    assert s["em"] == 1.0 and s["f1"] == 1.0


def test_best_reference_wins_and_containment():
    s = qa_scores("The Denver Broncos won Super Bowl 50 [1].", ["Broncos", "Denver Broncos"],
                  ["The Denver Broncos defeated the Carolina Panthers."])
    assert s["em"] == 0.0
    assert s["answer_contains_ref"] == 1.0
    assert s["answer_in_context"] == 1.0
    assert s["f1"] == pytest.approx(2 * (2 / 6) * 1 / (2 / 6 + 1))  # 6 tokens after normalisation


def test_answer_in_context_needs_whole_words():
    assert answer_in_context(["Den"], ["Denver Broncos"]) == 0.0
    assert answer_in_context(["Broncos"], ["no", "the Broncos won"]) == 1.0
    assert qa_scores("anything", [], ["ctx"]) == {}
