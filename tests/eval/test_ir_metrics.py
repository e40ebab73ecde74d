"""rag.metrics on a hand-made 4-query fixture: exact values, and the same numbers as ir-measures."""
import math

import pytest

from rag.metrics import evaluate, per_query, read_run, write_run

# q2 has a score tie (d4, d5): trec_eval order breaks it by docid descending, so d5 ranks first.
RUN = {
    "q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7},
    "q2": {"d4": 0.5, "d5": 0.5, "d6": 0.1},
    "q3": {"d7": 0.9, "d8": 0.8},
    "q4": {"d10": 0.3, "d1": 0.2},
}
QRELS = {"q1": {"d1": 1}, "q2": {"d4": 2, "d6": 1}, "q3": {"d9": 1}, "q4": {"d1": 1}}

L3, L4 = math.log2(3), math.log2(4)
NDCG_Q2 = (3 / L3 + 1 / L4) / (3 + 1 / L3)  # gains 2^rel - 1, order d5, d4, d6
EXPECTED_PER_QUERY = {
    "recall@1": {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 0.0},
    "recall@2": {"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": 1.0},
    "recall@5": {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q4": 1.0},
    "mrr@10": {"q1": 1.0, "q2": 0.5, "q3": 0.0, "q4": 0.5},
    "ndcg@10": {"q1": 1.0, "q2": NDCG_Q2, "q3": 0.0, "q4": 1 / L3},
}


def test_exact_per_query_and_means():
    pq = per_query(RUN, QRELS, EXPECTED_PER_QUERY)
    for m, want in EXPECTED_PER_QUERY.items():
        assert pq[m] == pytest.approx(want, abs=1e-12), m
    means = evaluate(RUN, QRELS, EXPECTED_PER_QUERY)
    assert means["recall@1"] == 0.25
    assert means["recall@5"] == 0.75
    assert means["mrr@10"] == 0.5
    assert means["ndcg@10"] == pytest.approx((1 + NDCG_Q2 + 1 / L3) / 4, abs=1e-12)


def test_judged_query_missing_from_run_scores_zero():
    run = {q: d for q, d in RUN.items() if q != "q1"}
    assert per_query(run, QRELS, ["recall@5"])["recall@5"]["q1"] == 0.0


def test_trec_run_file_round_trip(tmp_path):
    write_run(tmp_path / "run.trec", RUN)
    assert evaluate(read_run(tmp_path / "run.trec"), QRELS) == evaluate(RUN, QRELS)


def test_matches_ir_measures():
    ir_measures = pytest.importorskip("ir_measures")
    from ir_measures import RR, R, nDCG

    # ir-measures' nDCG uses the grade as gain; ours uses 2^rel - 1, so map grades explicitly.
    ndcg = nDCG(gains={0: 0, 1: 1, 2: 3}) @ 10
    measures = [R @ 1, R @ 2, R @ 5, RR @ 10, ndcg]
    ours_key = {R @ 1: "recall@1", R @ 2: "recall@2", R @ 5: "recall@5", RR @ 10: "mrr@10", ndcg: "ndcg@10"}
    ours = per_query(RUN, QRELS, EXPECTED_PER_QUERY)
    seen = 0
    # pytrec_eval explicitly: ir-measures' default picks the msmarco provider for RR, which breaks
    # score ties another way than trec_eval (q2's tie would then differ).
    for m in ir_measures.pytrec_eval.iter_calc(measures, QRELS, RUN):
        assert ours[ours_key[m.measure]][m.query_id] == pytest.approx(m.value, abs=1e-9), (m.measure, m.query_id)
        seen += 1
    assert seen == len(measures) * len(QRELS)
