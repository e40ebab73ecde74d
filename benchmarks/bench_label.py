"""Labelling throughput per teacher mode, the cost of a cache hit, and KV-prefix reuse vs naive.

    python benchmarks/bench_label.py [--queries 5] [--candidates 10] [--modes query_likelihood,listwise,pointwise]
    python benchmarks/bench_label.py --check-estimate [--queries 5] [--candidates 10]
    python benchmarks/bench_label.py --floor [--queries 5] [--candidates 10]
    python benchmarks/bench_label.py --order [--lists runs/labels/RUN/candidates.jsonl.gz --corpus DIR]

Takes the first N candidate lists of the committed squad_dev label set, ranks them with each mode
into a temporary directory (fresh cache: every call is paid), then once more (all cache hits).
For query likelihood it also scores the same pairs naively (the passage re-read for every pair)
and reports the largest score difference. Prints one JSON line per measurement.

--check-estimate: the dry run's wall-time estimate (timing probe: a fresh directory has no ledger)
against the real labelling of the same small job (query likelihood, fresh cache), then the estimate
the ledger of that run gives for it; exits 1 when the probe's estimate is off by more than 20%.

--floor: how close query likelihood runs to llama.cpp's prompt-eval rate on this machine. The raw
rate (a long prompt, no output logits) against the scorer's effective rate (tokens it evaluates
per second) on the same pairs, batched (its default, queries of a passage decoded together) and
one query per decode; and how far batching moves the scores (max and mean |difference|, and how
often each query's top-1 passage stays the same).

--order: how soon labelling completes queries (what a budget stop has to train on), no LLM: the
product's turn order (rank_query_likelihood with a scorer that only counts each passage read's
estimated tokens) against taking queries in input order, as queries completed at 10..90% of the
job's tokens. Default lists: the committed squad_dev label set; --lists/--corpus for another run's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

LABELS = Path(__file__).resolve().parent.parent / "corpora/squad_dev/labels/qwen2.5-coder-1.5b-ql"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--modes", default="query_likelihood")
    ap.add_argument("--check-estimate", action="store_true", help="estimate vs real wall time (target: within 20%%)")
    ap.add_argument("--floor", action="store_true", help="raw prompt-eval rate vs the scorer's, batched and not")
    ap.add_argument("--order", action="store_true", help="queries completed over the job: turn order vs input order")
    ap.add_argument("--lists", default=str(LABELS / "candidates.jsonl.gz"), help="candidate lists for --order")
    ap.add_argument("--corpus", default="squad_dev", help="the corpus of --lists")
    args = ap.parse_args()

    from rag.corpus import load_corpus
    from rag.llm_cache import LLMCache
    from rag.records import CandidateList, read_jsonl
    from rag.settings import apply_offline_env
    from retriever_training.llm_rank import rank_candidates
    from retriever_training.ranking import LLMRankConfig

    apply_offline_env()
    if args.order:
        return order(list(read_jsonl(args.lists, CandidateList)), load_corpus(args.corpus), args.candidates)
    corpus = load_corpus("squad_dev")
    lists = list(read_jsonl(LABELS / "candidates.jsonl.gz", CandidateList))
    # Neighbouring lists of one article share passages, as in a real run.
    lists = sorted(lists, key=lambda c: c.candidates[0].docid)[: args.queries]
    if args.check_estimate:
        raise SystemExit(check_estimate(lists, corpus, args.candidates))
    if args.floor:
        return floor(lists, corpus, args.candidates)
    for mode in args.modes.split(","):
        cfg = LLMRankConfig(mode=mode, max_candidates=args.candidates, window=min(10, args.candidates), step=5)
        with tempfile.TemporaryDirectory() as tmp:
            cache = LLMCache(Path(tmp) / "cache.sqlite")
            t = time.perf_counter()
            led = rank_candidates(lists, corpus, cfg, Path(tmp) / "a.jsonl", cache=cache, progress=False)
            paid = time.perf_counter() - t
            t = time.perf_counter()
            hit = rank_candidates(lists, corpus, cfg, Path(tmp) / "b.jsonl", cache=cache, progress=False)
            free = time.perf_counter() - t
        print(json.dumps({"mode": mode, "queries": len(lists), "candidates": args.candidates,
                          "calls": led.calls, "seconds": round(paid, 1),
                          "queries_per_min": round(60 * len(lists) / paid, 2),
                          "rerun_all_cache_hits_s": round(free, 2), "rerun_calls": hit.calls,
                          "prompt_tokens": led.prompt_tokens}), flush=True)
        if mode == "query_likelihood":
            from rag.models import ensure_llm
            from retriever_training.query_likelihood import QLConfig, QueryLikelihoodScorer

            scorer = QueryLikelihoodScorer(ensure_llm(), QLConfig())
            pairs = [(cl.query, c.docid) for cl in lists for c in cl.candidates[: args.candidates]]
            t = time.perf_counter()
            naive = {(q, d): scorer.score_naive(corpus.by_id[d].title, corpus.by_id[d].text, q) for q, d in pairs}
            naive_s = time.perf_counter() - t
            t = time.perf_counter()
            shared = {}
            for d in dict.fromkeys(d for _, d in pairs):
                qs = [q for q, dd in pairs if dd == d]
                for q, s in zip(qs, scorer.score_passage(corpus.by_id[d].title, corpus.by_id[d].text, qs)):
                    shared[(q, d)] = s
            shared_s = time.perf_counter() - t
            print(json.dumps({"query_likelihood_pairs": len(pairs), "unique_passages": len({d for _, d in pairs}),
                              "naive_s": round(naive_s, 1), "prefix_reuse_s": round(shared_s, 1),
                              "speedup": round(naive_s / shared_s, 2),
                              "max_abs_score_diff": max(abs(naive[k] - shared[k]) for k in pairs)}), flush=True)


def floor(lists, corpus, candidates: int) -> None:
    from rag.models import ensure_llm
    from retriever_training.query_likelihood import QLConfig, QueryLikelihoodScorer

    gguf = ensure_llm()
    batched, single = QueryLikelihoodScorer(gguf, QLConfig()), QueryLikelihoodScorer(gguf, QLConfig(), max_sequences=1)
    # Raw: the passages of the job end to end as one ~450-token prompt, evaluated without logits.
    text = " ".join(corpus.by_id[c.docid].text for cl in lists for c in cl.candidates)
    long = batched._tokens(text, bos=True)[:450]
    raw = []
    for _ in range(2):
        batched._prefix = None
        t = time.perf_counter()
        batched._load_prefix(long + [long[-1]])  # all but the last token: exactly `long`
        raw.append(len(long) / (time.perf_counter() - t))
    by_passage: dict[str, list[str]] = {}
    for cl in lists:
        for c in cl.candidates[:candidates]:
            by_passage.setdefault(c.docid, []).append(cl.query)
    scores, rates = {}, {}
    for name, scorer in (("batched", batched), ("one_per_decode", single)):
        toks, t = 0, time.perf_counter()
        for d, qs in by_passage.items():
            for q, s in zip(qs, scorer.score_passage(corpus.by_id[d].title, corpus.by_id[d].text, qs)):
                scores[name, q, d] = s
            toks += scorer.last_tokens
        rates[name] = toks / (time.perf_counter() - t)
    pairs = [(q, d) for d, qs in by_passage.items() for q in qs]
    diffs = [abs(scores["batched", q, d] - scores["one_per_decode", q, d]) for q, d in pairs]

    def top1(name):
        return {cl.query: max(cl.candidates[:candidates], key=lambda c: scores[name, cl.query, c.docid]).docid
                for cl in lists}
    same = sum(top1("batched")[q] == top1("one_per_decode")[q] for q in top1("batched"))
    best_raw = max(raw)
    print(json.dumps({"check": "floor", "queries": len(lists), "pairs": len(pairs), "unique_passages": len(by_passage),
                      "raw_tokens_per_s": round(best_raw, 1),
                      **{f"{k}_tokens_per_s": round(v, 1) for k, v in rates.items()},
                      **{f"{k}_of_raw": round(v / best_raw, 3) for k, v in rates.items()},
                      "max_abs_score_diff": round(max(diffs), 4), "mean_abs_score_diff": round(sum(diffs) / len(diffs), 4),
                      "top1_same": f"{same}/{len(lists)}"}), flush=True)


def order(lists, corpus, candidates: int, at=(0.1, 0.25, 0.5, 0.75, 0.9)) -> None:
    from rag.llm_cache import LLMCache
    from retriever_training.label_cost import passage_tokens, query_tokens
    from retriever_training.ranking import LLMRankConfig
    from retriever_training.rank_ql import rank_query_likelihood

    ids_of = {cl.qid: list(dict.fromkeys(c.docid for c in cl.candidates[:candidates])) for cl in lists}
    by_passage: dict[str, list[str]] = {}
    for q, ids in ids_of.items():
        for d in ids:
            by_passage.setdefault(d, []).append(q)
    text = {cl.qid: cl.query for cl in lists}
    cost = {d: passage_tokens(corpus.by_id[d].text, corpus.by_id[d].title) + sum(query_tokens(text[q]) for q in qs)
            for d, qs in by_passage.items()}
    total = sum(cost.values())

    def input_order() -> list[tuple[float, int]]:  # the former rule: the next query of the input
        read, left, done, spent, curve = set(), {q: len(ids) for q, ids in ids_of.items()}, 0, 0, []
        for q in ids_of:
            for d in ids_of[q]:
                if d not in read:
                    read.add(d)
                    spent += cost[d]
                    for q2 in by_passage[d]:
                        left[q2] -= 1
                        done += left[q2] == 0
                    curve.append((spent / total, done))
        return curve

    docid_of = {(corpus.by_id[d].title, corpus.by_id[d].text): d for d in by_passage}

    class Counting:  # the product's order, its scores all zero: only the reads' tokens are counted
        def __init__(self, out):
            self.out, self.spent, self.curve = out, 0, []

        def score_passage(self, title, passage, queries):
            d = docid_of[title, passage]
            self.spent += cost[d]
            done = sum(1 for _ in open(self.out)) if self.out.exists() else 0
            self.curve.append((self.spent / total, done))
            self.last_tokens = cost[d]
            return [0.0] * len(queries)

    with tempfile.TemporaryDirectory() as tmp:
        counting = Counting(Path(tmp) / "r.jsonl")
        rank_query_likelihood(lists, corpus, LLMRankConfig(max_candidates=candidates), counting.out,
                              LLMCache(Path(tmp) / "cache.sqlite"), progress=False, scorer=counting)
        # a read's completions are written after it returns: shift each count to the read before
        turn = [(s, n) for (s, _), (_, n) in zip(counting.curve, counting.curve[1:] + [(1.0, len(lists))])]

    def queries_at(curve):
        return {f"{f:.0%}": max([n for s, n in curve if s <= f + 1e-9] or [0]) for f in at}
    print(json.dumps({"check": "order", "queries": len(lists), "passages": len(by_passage), "est_tokens": total,
                      "completed_at_share_of_tokens": {"turn_order": queries_at(turn),
                                                       "input_order": queries_at(input_order())}}), flush=True)


def check_estimate(lists, corpus, candidates: int, tolerance: float = 0.2) -> int:
    from rag.llm_cache import LLMCache
    from retriever_training.llm_rank import rank_candidates
    from retriever_training.ranking import LLMRankConfig, ledger_path

    cfg = LLMRankConfig(mode="query_likelihood", max_candidates=candidates)
    with tempfile.TemporaryDirectory() as tmp:
        out, cache = Path(tmp) / "r.jsonl", LLMCache(Path(tmp) / "cache.sqlite")
        est = rank_candidates(lists, corpus, cfg, out, cache=cache, progress=False, dry_run=True).extra["estimate"]
        t = time.perf_counter()
        led = rank_candidates(lists, corpus, cfg, out, cache=cache, progress=False)
        real = time.perf_counter() - t
        # the same job priced from the ledger the real run just wrote (a fresh label set, same machine)
        again = rank_candidates(lists, corpus, cfg, Path(tmp) / "other.jsonl", cache=LLMCache(Path(tmp) / "c2.sqlite"),
                                progress=False, dry_run=True, ledgers=[ledger_path(out)]).extra["estimate"]
    ratio = est["seconds"] / real if real else float("nan")
    ok = abs(ratio - 1) <= tolerance
    print(json.dumps({"check": "estimate", "queries": len(lists), "pairs": est["pairs"],
                      "unique_passages": est["unique_passages"], "est_prompt_tokens": est["prompt_tokens"],
                      "real_prompt_tokens": led.prompt_tokens, "probe_estimate_s": est["seconds"],
                      "probe_tokens_per_s": est["tokens_per_s"], "real_s": round(real, 1),
                      "ratio": round(ratio, 3), "ledger_estimate_s": again["seconds"],
                      "ledger_ratio": round(again["seconds"] / real, 3) if real else None,
                      "within": tolerance, "ok": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    main()
