"""RAGAS metric selection: cost, failures counted, agreement with the gold truth, on 2 fake samples."""
import math

from eval.ragas_select import auc, choose, pooled_samples, spearman, table


def test_selection_table_on_two_fake_samples():
    records = {"base": [{"qid": "q1", "qa": {"em": 1.0, "f1": 1.0, "answer_in_context": 1.0, "citation_precision": 1.0}},
                        {"qid": "q2", "qa": {"em": 0.0, "f1": 0.2, "answer_in_context": 0.0, "citation_precision": 0.0}}]}
    judged = {"base": [
        {"qid": "q1", "metrics": {"faithfulness": {"value": 0.9, "status": "ok", "seconds": 10},
                                  "context_recall": {"value": 0.1, "status": "ok", "seconds": 30},
                                  "factual_correctness": {"value": None, "status": "parse_error", "seconds": 5}}},
        {"qid": "q2", "metrics": {"faithfulness": {"value": 0.2, "status": "ok", "seconds": 12},
                                  "context_recall": {"value": 0.8, "status": "ok", "seconds": 34},
                                  "factual_correctness": {"value": float("nan"), "status": "nan", "seconds": 5}}}]}
    j, t = pooled_samples(records, judged)
    assert set(j) == {"base/q1", "base/q2"} and t["base/q1"]["em"] == 1.0
    by = {c.metric: c for c in choose(j, t)}
    f = by["faithfulness"]
    assert (f.selected, f.truth, f.agreement, f.auc_em, f.seconds_per_sample) == (True, "citation_precision", 1.0, 1.0, 11.0)
    cr = by["context_recall"]  # disagrees with answer-in-context and costs 32 s: both reasons given
    assert not cr.selected and cr.agreement == -1.0 and "agreement" in cr.why and "32.0 s/sample" in cr.why
    fc = by["factual_correctness"]  # every sample failed: counted, nothing averaged, not selected
    assert (fc.n, fc.n_failed, fc.failure_rate, fc.agreement, fc.selected) == (2, 2, 1.0, None, False)
    head, rows = table(choose(j, t))
    assert all(len(r) == len(head) for r in rows)
    assert [(r[0], r[2], r[-2]) for r in rows] == [("context_recall", "0/2", "no"),
                                                   ("factual_correctness", "2/2", "no"),
                                                   ("faithfulness", "0/2", "yes")]


def test_rank_statistics():
    assert spearman([1, 2, 3], [10, 20, 30]) == 1.0 and spearman([1, 1], [0, 1]) is None
    assert math.isclose(spearman([1, 2, 2, 3], [1, 2, 3, 4]), 0.9486832980505138)
    assert auc([0.9, 0.1, 0.5], [1, 0, 0]) == 1.0 and auc([0.5, 0.5], [1, 0]) == 0.5 and auc([1], [1]) is None
