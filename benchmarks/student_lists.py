"""The student's training lists with the dense model's own hard negatives: does it lift the student?

    cd OUT   # where the retrain ran (its corpus path is relative to it)
    python <repo>/benchmarks/student_lists.py <runs>/own-llm --first 4 --dense 4 --out mixed44 \\
        [--distill.lr=1e-4 --distill.epochs=3]
    distilrag eval --corpus docs --queries heldout.jsonl --retrieval-only --retrievers base,mixed44/student --name mixed
(<runs>: the runs directory, runs/ under the repository unless DISTILRAG_RUNS_DIR says otherwise;
the figures are in docs/own-corpus.md, "What limits the student".)

In:  a finished retrain's run directory: config.json, ranker/, teacher_scores.jsonl.gz (which
     queries teach the student), its label set's candidate lists and rankings
Out: OUT/<out>/teacher_scores.jsonl.gz — each training query's list: the first stage's top `--first`,
     then the base dense model's top passages not among them up to `--first + --dense`, all scored by
     the run's ranker; OUT/<out>/student/ — distilled from them with the run's distill settings
     (overridable), the checkpoint chosen on the run's held-out labelled queries, as the retrain does.

Why: the recipe's lists are the hybrid first stage's top 4, so the passages the dense model itself
ranks high by mistake seldom reach its loss (ANCE and GPL mine negatives with the dense model).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mixed_lists(scored, lists: dict, dense, first: int, total: int):
    """CandidateLists of the scored queries: the first stage's top `first`, then the dense
    retriever's hits not among them, then the first stage's next, up to `total`."""
    from rag.records import Candidate, CandidateList

    out = []
    for ts in scored:
        cl = lists[ts.qid]
        ids = [c.docid for c in cl.candidates[:first]]
        for d in [n.node.node_id for n in dense.retrieve(cl.query)] + [c.docid for c in cl.candidates]:
            if len(ids) >= total:
                break
            if d not in ids:
                ids.append(d)
        out.append(CandidateList(cl.qid, cl.query, "first-stage+dense", [Candidate(d, 0.0, i + 1)
                                                                          for i, d in enumerate(ids)]))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished retrain's run directory")
    ap.add_argument("--first", type=int, default=4, help="first-stage candidates kept per query")
    ap.add_argument("--dense", type=int, default=4, help="dense-model hits added per query")
    ap.add_argument("--out", type=Path, required=True)
    a, rest = ap.parse_known_args(argv)

    from sentence_transformers.cross_encoder import CrossEncoder

    from rag.config import build, parse_overrides
    from rag.corpus import load_corpus
    from rag.records import CandidateList, LLMRanking, TeacherScores, read_jsonl, write_jsonl
    from rag.retrievers import make_retriever
    from rag.settings import apply_offline_env, set_torch_threads, use_bf16
    from retriever_training.distill import DistillConfig, distill
    from retriever_training.recipe import LABEL_SECTIONS, labels_path
    from retriever_training.retrain import load_gold
    from retriever_training.score_teacher import score_lists
    from retriever_training.splits import dev_set, heldout_ids

    apply_offline_env()
    set_torch_threads()
    cfg = json.loads((a.run / "config.json").read_text())
    overrides = parse_overrides(rest)  # the retrain's --section.key=value, coerced as it coerces them
    if set(overrides) - {"distill"}:
        raise SystemExit(f"only --distill.* settings apply here, not {sorted(set(overrides) - {'distill'})}")
    dc = build(DistillConfig, {**cfg["distill"], **overrides.get("distill", {}), "docs_per_query": a.first + a.dense},
               "distill")
    corpus = load_corpus(cfg["label"]["corpus"])
    labels = labels_path(build(LABEL_SECTIONS["label"], cfg["label"], "label"))
    lists = {cl.qid: cl for p in [labels / "candidates.jsonl.gz", *a.run.glob("unlabelled_candidates_*.jsonl.gz")]
             for cl in read_jsonl(p, CandidateList)}
    scored = list(read_jsonl(a.run / "teacher_scores.jsonl.gz", TeacherScores))  # never a held-out query
    t = time.perf_counter()
    new = mixed_lists(scored, lists, make_retriever("base", corpus, top_k=a.first + a.dense), a.first,
                      a.first + a.dense)
    scores = score_lists(CrossEncoder(str(a.run / "ranker")), new, corpus, {s.qid for s in scored if s.labelled},
                         "ranker:first-stage+dense", a.first + a.dense, 16, True, use_bf16("auto"))
    a.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(a.out / "teacher_scores.jsonl.gz", scores)
    lists_s = time.perf_counter() - t
    rankings = list(read_jsonl(labels / "rankings.jsonl", LLMRanking))
    held = heldout_ids({r.qid for r in rankings}, cfg["ranker"]["heldout_fraction"])
    queries = {q: cl.query for q, cl in lists.items()}
    qrels = load_gold(cfg["label"]["corpus"], cfg["run"]["qrels"])  # as the retrain chose its checkpoint
    dev, dev_qrels, _ = dev_set(cfg["label"]["corpus"], qrels, [r for r in rankings if r.qid in held], queries,
                                dc.dev_queries, dc.seed)
    t = time.perf_counter()
    m = distill(dc, scores, queries, corpus, dev, dev_qrels, a.out / "student")
    print(json.dumps({"queries": len(scores), "docs_per_query": dc.docs_per_query, "lr": dc.lr, "epochs": dc.epochs,
                      "lists_and_scores_s": round(lists_s), "distill_s": round(time.perf_counter() - t),
                      "dev_ndcg@10": [round(h["ndcg@10"], 4) for h in m["history"]], "best_epoch": m["best_epoch"],
                      "student": str(a.out / "student")}))


if __name__ == "__main__":
    main()
