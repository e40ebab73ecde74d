"""Per-retriever metrics from answer records, and agreement between retrievers.

In:  the answer records of one retriever (eval/run.py) and qrels (or None for a user's corpus).
Out: metrics.json content: {"n_questions", "n_answered", "n_errors", "ir": {ndcg@10, ...},
     "qa": {em, f1, answer_contains_ref, answer_in_context, citation_precision}, "answers":
     {no_answer_rate, citation_rate, cited_relevant, abstained, unsupported_lexical, unsupported_llm,
     n_cached}, "latency_s": {retrieve_s: {mean, p50, p95}, ...}};
     per-question values for bootstrapping (`per_question`), and retrieval agreement
     (top-k overlap, Kendall tau) for corpora without gold labels.
IR metrics come only from rag.metrics (the one implementation the trainer uses too).
"""
from __future__ import annotations

from statistics import mean

from rag.metrics import DEFAULT_METRICS, kendall_tau, order_metric

RECALL_CURVE_KS = (1, 2, 3, 5, 10, 15, 20)


def run_of(records: list[dict]) -> dict[str, dict[str, float]]:
    """The TREC-style run of the records (rank-preserving scores, as rag.retrievers.retrieve_run)."""
    return {r["qid"]: {d: float(len(r["retrieved"]) - i) for i, d in enumerate(r["retrieved"])}
            for r in records}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def per_question(records: list[dict], qrels, metrics=DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """metric -> qid -> value: IR metrics (judged questions) and QA scores, for bootstrapping."""
    from rag.metrics import per_query

    out: dict[str, dict[str, float]] = {}
    if qrels is not None:
        qids = {r["qid"] for r in records}
        out.update(per_query(run_of(records), {q: v for q, v in qrels.items() if q in qids}, metrics))
    for r in records:
        # checks (abstention, grounding) need no gold answer: they count on any question set
        for k, v in {**(r.get("qa") or {}), **(r.get("checks") or {})}.items():
            if v is not None:
                out.setdefault(k, {})[r["qid"]] = float(v)
    return out


def compute_metrics(records: list[dict], qrels, n_asked: int | None = None) -> dict:
    pq = per_question(records, qrels)
    m: dict = {"n_questions": n_asked if n_asked is not None else len(records),
               "n_answered": len(records),
               "n_errors": (n_asked - len(records)) if n_asked is not None else 0}
    if qrels is not None:
        m["ir"] = {k: mean(pq[k].values()) if pq.get(k) else 0.0 for k in DEFAULT_METRICS}
        m["ir"]["n_judged"] = len(next(iter(pq.values()), {})) if pq else 0
        m["recall_curve"] = recall_curve(records, qrels)
    qa_keys = sorted({k for r in records for k in (r.get("qa") or {})})
    if qa_keys:
        m["qa"] = {k: mean(pq[k].values()) for k in qa_keys}
    answered = [r for r in records if r.get("answer") is not None]
    if answered:
        ans = {"no_answer_rate": mean(float(bool(r.get("no_answer"))) for r in answered),
               "citation_rate": mean(float(bool(r.get("cited_docids"))) for r in answered)}
        if qrels is not None:
            cited = [r for r in answered if r.get("cited_docids")]
            # Share of citing answers whose first citation is a gold passage.
            ans["cited_relevant"] = mean(float(qrels.get(r["qid"], {}).get(r["cited_docids"][0], 0) > 0)
                                         for r in cited) if cited else None
        for k in sorted({k for r in answered for k in (r.get("checks") or {})}):
            # the mean over the answers whose check decided; how many that was sits beside it
            ans[k] = mean(pq[k].values()) if pq.get(k) else None
            ans[f"n_{k}"] = len(pq.get(k, {}))
        ans["n_cached"] = sum(1 for r in answered if r.get("cached"))
        m["answers"] = ans
    lat = {}
    for key in ("retrieve_s", "first_token_s", "total_s"):
        vals = [r["timings"][key] for r in records if key in (r.get("timings") or {})]
        if vals:
            lat[key] = {"mean": round(mean(vals), 4), "p50": round(_pct(vals, 0.5), 4),
                        "p95": round(_pct(vals, 0.95), 4)}
    m["latency_s"] = lat
    return m


def recall_curve(records: list[dict], qrels, ks=RECALL_CURVE_KS) -> dict[str, float]:
    judged = [r for r in records if any(v > 0 for v in qrels.get(r["qid"], {}).values())]
    if not judged:
        return {}
    return {str(k): mean(order_metric(r["retrieved"], qrels[r["qid"]], f"recall@{k}") for r in judged)
            for k in ks}


def agreement(records_by_retriever: dict[str, list[dict]], k: int = 5) -> dict[str, dict[str, float]]:
    """Pairwise retrieval agreement without gold labels: mean Jaccard overlap of the top-k sets
    and mean Kendall tau over the documents both top-k lists share (1 = same order)."""
    names = sorted(records_by_retriever)
    tops = {n: {r["qid"]: r["retrieved"][:k] for r in records_by_retriever[n]} for n in names}
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(tops[a]) & set(tops[b]))
            if not common:
                continue
            jac, taus = [], []
            for q in common:
                sa, sb = set(tops[a][q]), set(tops[b][q])
                jac.append(len(sa & sb) / len(sa | sb) if sa | sb else 1.0)
                if len(sa & sb) >= 2:
                    taus.append(kendall_tau(tops[a][q], tops[b][q]))
            out[f"{a} vs {b}"] = {f"overlap@{k}": mean(jac), "kendall_tau": mean(taus) if taus else None,
                                  "top1_agree": mean(float(tops[a][q][:1] == tops[b][q][:1]) for q in common),
                                  "n": len(common)}
    return out
