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


def test_citation_precision_asks_whether_the_cited_passage_holds_a_gold_answer():
    from eval.qa_metrics import citation_precision

    refs = ["Denver Broncos"]
    assert citation_precision(refs, ["The Denver Broncos won."]) == 1.0
    assert citation_precision(refs, ["The Broncos won.", "THE DENVER BRONCOS, champions"]) == 0.5  # normalised as EM
    assert citation_precision(refs, []) is None and citation_precision([], ["x"]) is None  # undefined, not 0
    s = qa_scores("Denver [1]", refs, ["Carolina lost.", "Denver Broncos won."], ["Carolina lost."])
    assert s["citation_precision"] == 0.0 and s["answer_in_context"] == 1.0
    assert "citation_precision" not in qa_scores("Denver", refs, ["x"], [])


def _rec(qid, answer, refs, contexts, cited, retrieved=None):
    from eval.answer_checks import add_checks, cited_texts

    r = {"qid": qid, "question": "Who won?", "answer": answer, "references": refs, "contexts": contexts,
         "retrieved": retrieved or [f"d{i}" for i in range(len(contexts))], "cited_docids": cited,
         "timings": {"retrieve_s": 0.1, "total_s": 2.0}}
    r["qa"] = qa_scores(answer, refs, contexts, cited_texts(r))
    return add_checks(r, ("lexical",))


def test_hand_made_records_give_abstention_unsupported_and_citation_precision_with_bootstrap():
    from eval.metrics_table import compute_metrics, per_question
    from eval.report import comparisons

    ctx = ["The Denver Broncos won.", "Carolina lost."]
    base = [_rec("1", "Denver Broncos [1]", ["Denver Broncos"], ctx, ["d0"]),
            _rec("2", "Carolina [2]", ["Denver Broncos"], ctx, ["d1"]),
            _rec("3", "I don't know based on the provided documents.", ["Denver Broncos"], ctx, []),
            _rec("4", "Broncos", ["Denver Broncos"], ctx, [])]
    m = compute_metrics(base, None)
    assert m["qa"]["citation_precision"] == 0.5        # q1 cites the gold passage, q2 does not; q3, q4 cite none
    assert m["answers"]["abstained"] == 0.25
    # q2 "Carolina" is in its cited passage (lexically supported, but wrong); q4 cites nothing: unsupported
    assert m["answers"]["unsupported_lexical"] == 0.25 and m["answers"]["n_unsupported_lexical"] == 4
    other = [_rec(r["qid"], "Denver Broncos [1]", ["Denver Broncos"], ctx, ["d0"]) for r in base]
    pq = {"base": per_question(base, None), "other": per_question(other, None)}
    comp = comparisons(pq, {}, "base")["other vs base"]
    assert comp["abstained"]["delta"] == -0.25 and comp["unsupported_lexical"]["delta"] == -0.25
    assert comp["citation_precision"]["n"] == 2 and comp["em"]["delta"] == 0.75
    assert {"ci_low", "ci_high", "p_value"} <= set(comp["em"])
