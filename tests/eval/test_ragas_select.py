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


def test_embedded_judge_default_is_what_the_committed_measurement_selects():
    """The default metric set follows from the judgements in docs/, through the same selection code."""
    import gzip
    import json
    from pathlib import Path

    from eval.ragas_eval import ALL_METRICS, REFERENCE_FREE, WITH_REFERENCE, default_metrics

    path = Path(__file__).resolve().parents[2] / "docs" / "qa-squad_dev" / "ragas-judgements.jsonl.gz"
    rows = [json.loads(line) for line in gzip.open(path, "rt")]
    judged = {f"{r['retriever']}/{r['qid']}": r["metrics"] for r in rows}
    truth = {f"{r['retriever']}/{r['qid']}": r["truth"] for r in rows}
    assert len(rows) >= 50 and {m for r in rows for m in r["metrics"]} == set(ALL_METRICS)  # every metric tried
    selected = {c.metric for c in choose(judged, truth) if c.selected}
    assert set(default_metrics(True)) == selected
    needs_no_reference = set(REFERENCE_FREE) | {"context_relevance", "response_groundedness"}
    assert default_metrics(False) == tuple(sorted(selected & needs_no_reference))
    assert default_metrics(True, "http://judge.example/v1") == WITH_REFERENCE  # a stronger judge: the classic set
