"""Query-likelihood ranking for stage 3 (llm_rank), pairs grouped by passage for KV-prefix reuse.

Queries are processed in chunks; inside a chunk every (query, passage) pair is grouped by
passage so the passage prompt is read once. Each passage's scores are committed to the cache
together, and a chunk's rankings are appended when all their pairs are scored.
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


def model_id() -> str:
    from rag.models import DEFAULT_LLM

    return f"{DEFAULT_LLM.name}@{DEFAULT_LLM.sha256[:12]}"


def pair_key(model: str, title: str, text: str, query: str, qcfg: QLConfig) -> str:
    return cache_key(model, PROMPT_ID, PROMPT_VERSION,
                     [PASSAGE_TEMPLATE.format(title=title, text=text), query.strip()],
                     {"n_ctx": qcfg.n_ctx, "max_query_tokens": qcfg.max_query_tokens})


def rank_query_likelihood(todo: list[CandidateList], corpus: Corpus, cfg: LLMRankConfig,
                          out_path: Path, cache: LLMCache, progress: bool = True,
                          dry_run: bool = False, scorer=None) -> Ledger:
    from tqdm.auto import tqdm

    qcfg = QLConfig(n_threads=cfg.n_threads)
    model = model_id()
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
    # Neighbouring queries share candidates (same article): order by top candidate so that a
    # chunk reads each passage once for many queries.
    todo = sorted(todo, key=lambda cl: (cl.candidates[0].docid.split("#")[0] if cl.candidates else "", cl.qid))
    t0 = time.perf_counter()
    bar = tqdm(total=pairs_total, desc="query likelihood", unit="pair", disable=not progress)
    for start in range(0, len(todo), cfg.chunk_queries):
        chunk = todo[start: start + cfg.chunk_queries]
        by_passage: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for cl in chunk:
            for c in cl.candidates[: cfg.max_candidates]:
                by_passage[c.docid].append((cl.qid, cl.query))
        scores: dict[tuple[str, str], float] = {}
        for docid, qs in by_passage.items():
            p = corpus.by_id[docid]
            keys = [pair_key(model, p.title, p.text, q, qcfg) for _, q in qs]
            cached = [cache.get(k) for k in keys]
            todo_idx = [i for i, v in enumerate(cached) if v is None]
            if todo_idx:
                if scorer is None:
                    from rag.models import ensure_llm
                    from retriever_training.query_likelihood import QueryLikelihoodScorer

                    scorer = QueryLikelihoodScorer(ensure_llm(), qcfg)
                new = scorer.score_passage(p.title, p.text, [qs[i][1] for i in todo_idx])
                cache.put_many([(keys[i], s) for i, s in zip(todo_idx, new)])
                for i, s in zip(todo_idx, new):
                    cached[i] = s
                ledger.calls += len(todo_idx)
            ledger.cache_hits += len(qs) - len(todo_idx)
            for (qid, _), s in zip(qs, cached):
                scores[(qid, docid)] = float(s)
            bar.update(len(qs))
        for cl in chunk:
            ids = [c.docid for c in cl.candidates[: cfg.max_candidates]]
            # Stable sort: ties keep first-stage order.
            order = sorted(range(len(ids)), key=lambda i: -scores[(cl.qid, ids[i])])
            append_jsonl(out_path, LLMRanking(
                qid=cl.qid, docids_in=ids, ranked_docids=[ids[i] for i in order],
                scores=[scores[(cl.qid, ids[i])] for i in order], model=model,
                prompt_id=f"{PROMPT_ID}@v{PROMPT_VERSION}", mode=cfg.mode, n_calls=len(ids)))
            ledger.queries_done += 1
        ledger.seconds = round(time.perf_counter() - t0, 1)
        bar.set_postfix(queries=ledger.queries_done, hits=ledger.cache_hits)
    bar.close()
    save_ledger(out_path, ledger)
    return ledger
