"""Does the verdict rank the pipelines as gold does? The LLM's judgement of a retrain's held-out
queries against gold's on the same queries, with whole lists and with condensed ones.

    python benchmarks/verdict_agreement.py runs/squad_dev            # gold: the corpus's qrels
    cd OUT && python <repo>/benchmarks/verdict_agreement.py <runs>/own-oracle \\
        --corpus docs --answers log_answers.jsonl                     # gold: answer strings (own case)

In:  a retrain's run directory (config.json names the corpus and its label set; ranker/, student/),
     and gold for its held-out labelled queries: the corpus's qrels, or --answers (JSONL lines
     {"query", "answers"}: a passage holding an answer is relevant, as eval's answer-in-top-k)
Out: printed: each pipeline's nDCG@10 by gold, by the LLM on whole lists and on condensed lists
     (the verdict's rule: passages the LLM never ranked left out), top-1 agreement; then each
     LLM judgement's rank correlation with gold over the pipelines (Kendall tau-b, Spearman) and
     the pipeline it would pick. The figures are in docs/own-corpus.md.

The pipelines are the verdict's own (verdict.pipeline_specs / pipeline_orders, as the retrain runs
them), so this costs what the retrain's verdict stage costs (a few minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def answer_qrels(heldout, queries: dict[str, str], answers_file: Path, orders: dict, corpus) -> dict:
    """qid -> {passage holding a gold answer: 1}, over every passage any pipeline or the LLM saw."""
    from eval.qa_metrics import answer_in_context
    from rag.corpus import passage_text

    answers = {}
    for line in answers_file.read_text().splitlines():
        row = json.loads(line)
        answers[row["query"]] = row["answers"]
    qrels = {}
    for r in heldout:
        refs = answers.get(queries[r.qid])
        if not refs:
            continue
        seen = {d for o in orders.values() for d in o.get(r.qid, [])} | set(r.ranked_docids)
        rel = {d: 1 for d in seen if answer_in_context(refs, [passage_text(corpus.by_id[d])])}
        qrels[r.qid] = rel
    return qrels


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--corpus", help="the corpus as the retrain named it, when not as in config.json")
    ap.add_argument("--answers", type=Path, help="gold answer strings (JSONL) instead of the corpus's qrels")
    a = ap.parse_args(argv)

    from statistics import fmean

    import torch
    from scipy.stats import kendalltau, spearmanr

    from rag.corpus import load_corpus, load_qrels
    from rag.records import LLMRanking, read_jsonl
    from retriever_training.splits import heldout_ids, llm_qrels
    from retriever_training.verdict import llm_judged, per_query, pipeline_orders, pipeline_specs, ranking_qrels

    torch.set_num_threads(2)
    cfg = json.loads((a.run / "config.json").read_text())
    corpus_spec = a.corpus or cfg["label"]["corpus"]
    labels = Path(cfg["label"]["labels_dir"])
    corpus = load_corpus(corpus_spec)
    rankings = list(read_jsonl(labels / "rankings.jsonl", LLMRanking))
    held_ids = heldout_ids({r.qid for r in rankings}, cfg["ranker"]["heldout_fraction"])
    heldout = [r for r in rankings if r.qid in held_ids]
    queries = {row["qid"]: row["query"] for row in read_jsonl(labels / "queries.jsonl")}
    queries = {r.qid: queries[r.qid] for r in heldout}

    corpus_gold = {} if a.answers else {q: g for q, g in load_qrels(corpus_spec).items() if q in queries}
    specs, _, _ = pipeline_specs(a.run)
    _, fit_qrels, fit_judged = ranking_qrels(heldout, corpus_gold)  # the fusion is fitted as the retrain fits it
    orders = pipeline_orders(specs, corpus, queries, qrels=fit_qrels, judged=fit_judged)
    gold = answer_qrels(heldout, queries, a.answers, orders, corpus) if a.answers else corpus_gold
    judged_gold = [r for r in heldout if any(gold.get(r.qid, {}).values())]

    llm, judged = llm_qrels(judged_gold), llm_judged(judged_gold)
    rows = {}
    for spec, o in orders.items():
        whole = per_query(o, judged_gold, llm)
        rows[spec] = {"gold": fmean(per_query(o, judged_gold, gold)["ndcg@10"].values()),
                      "llm_whole": fmean(whole["ndcg@10"].values()),
                      "llm_condensed": fmean(per_query(o, judged_gold, llm, judged)["ndcg@10"].values()),
                      "top1": fmean(whole["top1"].values())}
    root = str(a.run)
    print(f"{len(judged_gold)} of {len(heldout)} held-out labelled queries have gold")
    print(f"{'pipeline':58} {'gold':>6} {'llm whole':>9} {'condensed':>9} {'top-1':>6}")
    for spec, r in sorted(rows.items(), key=lambda kv: -kv[1]["gold"]):
        name = spec.replace(root + "/", "")
        print(f"{name[-58:]:58} {r['gold']:6.3f} {r['llm_whole']:9.3f} {r['llm_condensed']:9.3f} {r['top1']:6.3f}")
    g = [r["gold"] for r in rows.values()]
    out = {"queries": len(judged_gold), "gold_pick": max(rows, key=lambda s: rows[s]["gold"]).replace(root + "/", "")}
    for k in ("llm_whole", "llm_condensed", "top1"):
        v = [r[k] for r in rows.values()]
        out[k] = {"kendall": kendalltau(g, v)[0], "spearman": spearmanr(g, v)[0],
                  "pick": max(rows, key=lambda s: rows[s][k]).replace(root + "/", "")}
        print(f"{k:14} vs gold over {len(rows)} pipelines: Kendall {out[k]['kendall']:.2f}, "
              f"Spearman {out[k]['spearman']:.2f}; picks {out[k]['pick']}")
    print(f"gold picks {out['gold_pick']}")
    return out


if __name__ == "__main__":
    main()
