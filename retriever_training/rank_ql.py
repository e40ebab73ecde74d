"""Query-likelihood ranking for stage 3 (llm_rank), pairs grouped by passage for KV-prefix reuse.

Every (query, passage) pair is grouped by passage so each passage prompt is read once for all
the queries that have it among their candidates. Each passage's scores are committed to the
cache together (a kill loses one passage's work at most), and a query's ranking is appended as
soon as all its candidates are scored.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from rag.corpus import Corpus
from rag.llm_cache import LLMCache, cache_key
from rag.records import CandidateList, LLMRanking, append_jsonl
from retriever_training.llm_rank import Ledger, LLMRankConfig, save_ledger
from retriever_training.query_likelihood import PASSAGE_TEMPLATE, PROMPT_ID, PROMPT_VERSION, QLConfig


def model_id(backend: str = "llama_cpp") -> str:
    """Weights and runtime: two runtimes give slightly different numbers, so they never share a cache entry."""
    from rag.models import DEFAULT_LLM

    base = f"{DEFAULT_LLM.name}@{DEFAULT_LLM.sha256[:12]}"
    return base if backend == "llama_cpp" else f"{base}/{backend}"


def pair_key(model: str, title: str, text: str, query: str, qcfg: QLConfig) -> str:
    return cache_key(model, PROMPT_ID, PROMPT_VERSION,
                     [PASSAGE_TEMPLATE.format(title=title, text=text), query.strip()],
                     {"n_ctx": qcfg.n_ctx, "max_query_tokens": qcfg.max_query_tokens})


def rank_query_likelihood(todo: list[CandidateList], corpus: Corpus, cfg: LLMRankConfig,
                          out_path: Path, cache: LLMCache, progress: bool = True,
                          dry_run: bool = False, scorer=None) -> Ledger:
    from tqdm.auto import tqdm

    qcfg = QLConfig(n_threads=cfg.n_threads)
    model = model_id(cfg.ql_backend)
    ledger = Ledger(mode=cfg.mode, model=model)
    pairs_total = sum(min(len(c.candidates), cfg.max_candidates) for c in todo)
    if dry_run:
        passages = {c.docid for cl in todo for c in cl.candidates[: cfg.max_candidates]}
        words = sum(len(corpus.by_id[d].text.split()) for d in passages)
        ledger.extra.update(pairs=pairs_total, unique_passages=len(passages),
                            est_prompt_tokens=int(words * 1.35) + 16 * pairs_total)
        ledger.prompt_tokens = ledger.extra["est_prompt_tokens"]
        ledger.add_cost(cfg)
        return ledger
    t0 = time.perf_counter()
    lists = {cl.qid: cl for cl in todo}
    ids_of = {cl.qid: [c.docid for c in cl.candidates[: cfg.max_candidates]] for cl in todo}
    by_passage: dict[str, list[str]] = defaultdict(list)
    for qid, ids in ids_of.items():
        for d in ids:
            by_passage[d].append(qid)
    remaining = {qid: len(set(ids)) for qid, ids in ids_of.items()}
    scores: dict[tuple[str, str], float] = {}
    bar = tqdm(total=pairs_total, desc="query likelihood", unit="pair", disable=not progress)
    try:
        # Every passage is read once for all its queries. Passages go in corpus order (article by
        # article), so the queries of an article complete together and are written as they complete.
        for docid in sorted(by_passage, key=_corpus_order(corpus)):
            qids = by_passage[docid]
            p = corpus.by_id[docid]
            keys = [pair_key(model, p.title, p.text, lists[q].query, qcfg) for q in qids]
            cached = [cache.get(k) for k in keys]
            todo_idx = [i for i, v in enumerate(cached) if v is None]
            if todo_idx:
                if scorer is None:
                    from retriever_training.query_likelihood import make_scorer

                    scorer = make_scorer(cfg.ql_backend, qcfg, device=cfg.ql_device, batch_size=cfg.ql_batch_size)
                new = scorer.score_passage(p.title, p.text, [lists[qids[i]].query for i in todo_idx])
                cache.put_many([(keys[i], s) for i, s in zip(todo_idx, new)])
                for i, s in zip(todo_idx, new):
                    cached[i] = s
                ledger.calls += len(todo_idx)
                ledger.prompt_tokens += getattr(scorer, "last_tokens", 0)
            ledger.cache_hits += len(qids) - len(todo_idx)
            for qid, s in zip(qids, cached):
                scores[(qid, docid)] = float(s)
                remaining[qid] -= 1
                if remaining[qid] == 0:
                    _write(out_path, qid, ids_of[qid], scores, model, cfg)
                    ledger.queries_done += 1
            bar.update(len(qids))
            ledger.seconds = round(time.perf_counter() - t0, 1)
            bar.set_postfix(queries=ledger.queries_done, hits=ledger.cache_hits)
            ledger.checkpoint(out_path)
    except BaseException:  # interrupted or failed: the calls paid so far still count
        save_ledger(out_path, ledger, status="interrupted")
        raise
    bar.close()
    save_ledger(out_path, ledger)
    return ledger


def _corpus_order(corpus: Corpus):
    pos = {p.docid: i for i, p in enumerate(corpus.passages)}
    return lambda d: pos[d]


def _write(out_path: Path, qid: str, ids: list[str], scores: dict, model: str, cfg: LLMRankConfig) -> None:
    # Stable sort: ties keep the first-stage order.
    order = sorted(range(len(ids)), key=lambda i: -scores[(qid, ids[i])])
    append_jsonl(out_path, LLMRanking(
        qid=qid, docids_in=ids, ranked_docids=[ids[i] for i in order],
        scores=[scores[(qid, ids[i])] for i in order], model=model,
        prompt_id=f"{PROMPT_ID}@v{PROMPT_VERSION}", mode=cfg.mode, n_calls=len(ids)))
