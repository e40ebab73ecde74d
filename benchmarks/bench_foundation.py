"""Foundation figures, measured in one run (ratios compare like with like on the same machine state).

    python benchmarks/bench_foundation.py [--passages 600] [--queries 300] [--llm-questions 3] [--split test]

Prints: indexing throughput vs raw SentenceTransformer.encode on the same passages; retrieval
latency p50/p95 for dense (embed query + FAISS top-10), BM25 and hybrid over the whole shipped
corpus; base retrieval quality on a split (Recall@1/5/20, MRR@10, nDCG@10) for dense, BM25 and
hybrid; embedded-LLM answer latency (time to first token, streamed chunks per second).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=600)
    ap.add_argument("--queries", type=int, default=300, help="latency sample")
    ap.add_argument("--split", default="test")
    ap.add_argument("--llm-questions", type=int, default=3)
    args = ap.parse_args()

    from rag.settings import apply_offline_env, set_torch_threads

    apply_offline_env()
    set_torch_threads()
    import tempfile
    from pathlib import Path

    from rag.corpus import Corpus, load_corpus, load_qrels, load_queries, passage_text
    from rag.embedder import load_sentence_transformer, resolve_embedder
    from rag.index import build_index
    from rag.metrics import evaluate
    from rag.retrievers import make_retriever, retrieve_run

    out: dict = {}
    corpus = load_corpus("squad_dev")
    sub = Corpus("bench_slice", corpus.passages[: args.passages])
    eid = resolve_embedder("base")
    model = load_sentence_transformer(eid.path)
    model.encode(["warm-up"])
    texts = [passage_text(p) for p in sub.passages]
    t = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    raw = len(texts) / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build_index(sub, eid, out_dir=Path(tmp) / "idx", progress=False)
        idx = len(texts) / (time.perf_counter() - t)
    out["indexing"] = {"passages": len(texts), "raw_encode_per_s": round(raw, 1),
                       "index_build_per_s": round(idx, 1), "ratio": round(idx / raw, 3)}
    print(json.dumps(out["indexing"]), flush=True)

    queries = load_queries("squad_dev", args.split)
    sample = queries[: args.queries]
    for spec in ("base", "bm25", "hybrid"):
        r = make_retriever(spec, corpus, top_k=10)
        r.retrieve(sample[0].query)
        lat = []
        for q in sample:
            t = time.perf_counter()
            r.retrieve(q.query)
            lat.append((time.perf_counter() - t) * 1000)
        out[f"latency_ms_{spec}"] = {"p50": round(statistics.median(lat), 2), "p95": round(pct(lat, 95), 2)}
        print(spec, json.dumps(out[f"latency_ms_{spec}"]), flush=True)

    qrels = load_qrels("squad_dev")
    metrics = ("recall@1", "recall@5", "recall@20", "mrr@10", "ndcg@10")
    for spec in ("base", "bm25", "hybrid"):
        r = make_retriever(spec, corpus, top_k=20)
        t = time.perf_counter()
        run = retrieve_run(r, [(q.qid, q.query) for q in queries])
        m = evaluate(run, qrels, metrics, qids=[q.qid for q in queries])
        out[f"quality_{spec}"] = {k: round(v, 4) for k, v in m.items()} | {
            "queries": len(queries), "queries_per_s": round(len(queries) / (time.perf_counter() - t), 1)}
        print(spec, json.dumps(out[f"quality_{spec}"]), flush=True)

    if args.llm_questions:
        from rag.chain import build_chain

        chain = build_chain(corpus, "base", top_k=5)
        chain.answer("warm-up: what is Super Bowl 50?")
        rows = []
        for q in queries[: args.llm_questions]:
            a = chain.answer(q.query)
            gen_s = max(a.timings["total_s"] - a.timings["first_token_s"], 1e-6)
            rows.append((a.timings["first_token_s"], a.timings["chunks"] / gen_s, a.timings["total_s"]))
        out["llm"] = {"questions": len(rows), "first_token_s_median": round(statistics.median(r[0] for r in rows), 2),
                      "stream_chunks_per_s_median": round(statistics.median(r[1] for r in rows), 1),
                      "answer_s_median": round(statistics.median(r[2] for r in rows), 2)}
        print("llm", json.dumps(out["llm"]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
