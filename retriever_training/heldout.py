"""Stage 6b — heldout: base vs distilled on a split that neither training nor model selection saw.

    distilrag retrain --config ...   (stage "heldout"; run.test_split names the split, "" skips it)

In:  <run>/student/, the base embedder, the corpus, its queries of run.test_split and gold qrels
Out: <run>/heldout_metrics.json — per metric: base and distilled means, delta, 95% CI and p of a
     paired bootstrap over the queries (rag.stats); the model card prints it. Retrieval is over the
     whole corpus, scored by rag.metrics, like the dev evaluation that picked the checkpoint.
The base model's per-query values are cached by weights, corpus, queries, sequence length and
precision: on the shipped test split (4,610 queries) they cost a corpus encoding (~1.5 min on 2 cores).
"""
from __future__ import annotations

import json
from pathlib import Path

from rag.corpus import Corpus
from rag.records import Query

REPORTED = ("ndcg@10", "recall@1", "recall@5", "recall@10", "mrr@10")


def per_query_metrics(model_path: str, corpus: Corpus, queries: list[Query], qrels: dict, max_seq_length: int,
                      bf16: bool) -> dict[str, dict[str, float]]:
    """metric -> qid -> value for the model at model_path, retrieving over the whole corpus."""
    from sentence_transformers import SentenceTransformer

    from rag.metrics import per_query
    from retriever_training.distill import retrieval_run

    model = SentenceTransformer(model_path)
    model.max_seq_length = max_seq_length
    run = retrieval_run(model, corpus, queries, bf16=bf16)
    return per_query(run, {q.qid: qrels[q.qid] for q in queries if q.qid in qrels}, REPORTED)


def cached_base_metrics(base_path: str, corpus: Corpus, queries: list[Query], qrels: dict, max_seq_length: int,
                        bf16: bool) -> dict[str, dict[str, float]]:
    from rag.records import write_json
    from retriever_training.distill import base_cache_path

    path = base_cache_path("base_heldout_metrics", base_path, corpus, queries, max_seq_length, bf16, REPORTED)
    if path.exists():
        return json.loads(path.read_text())
    values = per_query_metrics(base_path, corpus, queries, qrels, max_seq_length, bf16)
    write_json(path, values)
    return values


def heldout_report(student_dir: Path, base_path: str, corpus: Corpus, queries: list[Query], qrels: dict,
                   split: str, max_seq_length: int, bf16: bool) -> dict:
    from rag.stats import paired_by_qid

    judged = [q for q in queries if q.qid in qrels]
    if not judged:
        return {"split": split, "queries": 0}
    base = cached_base_metrics(base_path, corpus, judged, qrels, max_seq_length, bf16)
    student = per_query_metrics(str(student_dir), corpus, judged, qrels, max_seq_length, bf16)
    return {"split": split, "queries": len(judged),
            "metrics": {m: paired_by_qid(base[m], student[m]) for m in REPORTED}}


def heldout_card_section(report: dict) -> str:
    """The model card's table: base vs distilled with the paired bootstrap's CI and p."""
    if not report.get("queries"):
        return ""
    rows = "\n".join(f"| {m} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['delta']:+.4f} | "
                     f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['p_value']:.4f} |"
                     for m, r in report["metrics"].items())
    return (f"## Held-out {report['split']}-split retrieval (whole corpus, {report['queries']} queries)\n"
            "Neither training nor the choice of checkpoint saw these queries. CI and p: paired bootstrap.\n\n"
            "| metric | base | distilled | delta | 95% CI | p |\n|---|---|---|---|---|---|\n" + rows + "\n\n")
