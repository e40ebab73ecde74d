"""Label quality report: is the LLM teacher worth distilling? (run after every labelling run)

In:  rankings.jsonl (LLMRanking), candidates (first-stage order), qrels when the corpus has gold
Out: label_report.json — counts, repair/malformed rates, and against gold: nDCG@10 and MRR@10 of
     the LLM's order vs the first-stage order over the same candidates, and gold coverage.
"""
from __future__ import annotations

from rag.metrics import order_metric
from rag.records import CandidateList, LLMRanking


def label_report(rankings: list[LLMRanking], candidates: list[CandidateList] | None = None,
                 qrels: dict | None = None) -> dict:
    n = len(rankings)
    out: dict = {"queries": n}
    if not n:
        return out
    calls = sum(r.n_calls for r in rankings)
    out.update(calls=calls, repairs=sum(r.n_repairs for r in rankings),
               repair_rate=sum(r.n_repairs > 0 for r in rankings) / n,
               identity_rate=sum(r.ranked_docids == r.docids_in for r in rankings) / n,
               modes=sorted({r.mode for r in rankings}), models=sorted({r.model for r in rankings}))
    judged = [r for r in rankings if qrels and r.qid in qrels]
    if judged:
        out["judged_queries"] = len(judged)
        out["gold_in_candidates"] = sum(any(qrels[r.qid].get(d, 0) > 0 for d in r.docids_in) for r in judged) / len(judged)
        for metric in ("ndcg@10", "mrr@10", "recall@1"):
            llm = sum(order_metric(r.ranked_docids, qrels[r.qid], metric) for r in judged) / len(judged)
            first = sum(order_metric(r.docids_in, qrels[r.qid], metric) for r in judged) / len(judged)
            out[f"llm_{metric}"] = round(llm, 4)
            out[f"first_stage_{metric}"] = round(first, 4)
    return out
