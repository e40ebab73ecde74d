"""Query-likelihood ranking for stage 3 (llm_rank): query by query, each passage read once.

Each turn takes the query with the fewest passages left to read (ties: the input's seeded order);
each passage it lacks is scored for every query that has it among its candidates, so its prompt is
read once (KV-prefix reuse) and later queries find their pairs already scored. A query's ranking is
appended as soon as its pairs are all scored (its own turn or an earlier query's). Taking queries
in input order instead completes few until the end, since each new passage of a query is read for
a dozen queries that still lack others (benchmarks/bench_label.py --order measures both; figures
in docs/own-corpus.md). So the completed queries grow steadily, and a stop (a kill,
llm_rank.budget_minutes, llm_rank.max_queries) leaves only whole queries. Each passage's scores
are committed to the cache together (a kill loses one passage's work at most), and pairs already
in the cache are never paid again.
"""
from __future__ import annotations

import heapq
import time
from collections import defaultdict
from pathlib import Path

from rag.corpus import Corpus
from rag.llm_cache import LLMCache, cache_key
from rag.prompts import QUERY_LIKELIHOOD
from rag.records import CandidateList, LLMRanking, append_jsonl
from retriever_training.label_cost import passage_tokens, query_tokens
from retriever_training.ranking import Ledger, LLMRankConfig, budget_over, save_ledger
from retriever_training.query_likelihood import QLConfig


def model_id(backend: str = "llama_cpp", served: str = "") -> str:
    """Weights and runtime: two runtimes give slightly different numbers, so they never share a
    cache entry; `served` names another model behind http endpoints."""
    from rag.models import DEFAULT_LLM

    base = served or f"{DEFAULT_LLM.name}@{DEFAULT_LLM.sha256[:12]}"
    return base if backend == "llama_cpp" else f"{base}/{backend}"


def pair_key(model: str, title: str, text: str, query: str, qcfg: QLConfig) -> str:
    return cache_key(model, QUERY_LIKELIHOOD.id, QUERY_LIKELIHOOD.version,
                     [QUERY_LIKELIHOOD.template.format(title=title, text=text), query.strip()],
                     {"n_ctx": qcfg.n_ctx, "max_query_tokens": qcfg.max_query_tokens})


def rank_query_likelihood(todo: list[CandidateList], corpus: Corpus, cfg: LLMRankConfig,
                          out_path: Path, cache: LLMCache, progress: bool = True,
                          dry_run: bool = False, scorer=None, ledgers: list[Path] = (),
                          clock=time.perf_counter, probe=None) -> Ledger:
    """Rank `todo` into out_path; with dry_run, only the estimate (ledger.extra["estimate"]).
    `clock` and `probe` (label_cost.timing_probe) are what tests replace."""
    from tqdm.auto import tqdm

    qcfg = QLConfig(n_threads=cfg.n_threads)
    model = model_id(cfg.ql_backend, cfg.ql_model)
    ledger = Ledger(mode=cfg.mode, model=model, extra={"threads": cfg.n_threads})
    queries = {cl.qid: cl.query for cl in todo}
    ids_of = {cl.qid: list(dict.fromkeys(c.docid for c in cl.candidates[: cfg.max_candidates])) for cl in todo}
    by_passage: dict[str, list[str]] = defaultdict(list)
    for qid, ids in ids_of.items():
        for d in ids:
            by_passage[d].append(qid)
    keys = {(q, d): pair_key(model, corpus.by_id[d].title, corpus.by_id[d].text, queries[q], qcfg)
            for d, qids in by_passage.items() for q in qids}
    scores: dict[tuple[str, str], float] = {}  # the cache's pairs first: they cost nothing
    for pair, k in keys.items():
        if (v := cache.get(k)) is not None:
            scores[pair] = float(v)
    ledger.cache_hits = len(scores)
    to_pay = {d: [q for q in qids if (q, d) not in scores] for d, qids in by_passage.items()}
    if dry_run:
        ledger.extra["estimate"] = dry_run_estimate(to_pay, queries, corpus, cfg, ledgers, model, probe)
        ledger.prompt_tokens, ledger.cost_usd = ledger.extra["estimate"]["prompt_tokens"], 0.0
        return ledger
    t0 = clock()
    remaining = {q: sum((q, d) not in scores for d in ids) for q, ids in ids_of.items()}
    bar = tqdm(total=sum(remaining.values()), desc="query likelihood", unit="pair",
               disable=not progress)  # paid pairs only: its ETA is the time left
    try:
        for qid in [q for q, n in remaining.items() if n == 0]:  # every pair cached: free
            _write(out_path, qid, ids_of[qid], scores, model, cfg)
            ledger.queries_done += 1
        def commit(docid: str, pairs: list[tuple[str, float]], tokens: int) -> None:
            """Scored pairs of one passage into the cache, the ledger and any query they complete."""
            p = corpus.by_id[docid]
            cache.put_many([(keys[(q, docid)], s) for q, s in pairs])
            ledger.calls += len(pairs)
            ledger.prompt_tokens += tokens
            first = all((q, docid) not in scores for q in to_pay[docid])  # the passage is read once
            ledger.est_tokens += (passage_tokens(p.text, p.title) if first else 0) + sum(
                query_tokens(queries[q]) for q, _ in pairs)
            for q, s in pairs:
                scores[(q, docid)] = float(s)
                remaining[q] -= 1
                if remaining[q] == 0:  # whole: written now, whichever query's turn it is
                    _write(out_path, q, ids_of[q], scores, model, cfg)
                    ledger.queries_done += 1
                    turns.done(q)
                else:
                    turns.update(q, remaining[q])
            bar.update(len(pairs))
            bar.set_postfix(queries=ledger.queries_done, hits=ledger.cache_hits)
            ledger.seconds = round(clock() - t0, 1)
            ledger.checkpoint(out_path)

        turns = CheapestFirst({q: n for q, n in remaining.items() if n})
        while turns:
            if budget_over(cfg, t0, clock()):
                ledger.stopped = "budget"
                break
            if scorer is None:
                t = time.perf_counter()
                scorer = _make_scorer(cfg, qcfg)
                ledger.extra["load_s"] = round(time.perf_counter() - t, 1)
            # One query's turn in-process; as many queries as a farm has servers, so all keep busy.
            turn = turns.take(getattr(scorer, "parallelism", 1))
            work = {d: [q for q in to_pay[d] if (q, d) not in scores] for qid in turn for d in ids_of[qid]}
            _score(scorer, [(d, qs) for d, qs in work.items() if qs], corpus, queries, commit)
    except BaseException:  # interrupted or failed: the calls paid so far still count
        ledger.seconds = round(clock() - t0, 1)
        save_ledger(out_path, ledger, status="interrupted")
        raise
    bar.close()
    ledger.seconds = round(clock() - t0, 1)
    save_ledger(out_path, ledger, status="stopped" if ledger.stopped else "finished")
    return ledger


class CheapestFirst:
    """Queries by passages left to read, fewest first, ties in the order given: a heap whose stale
    entries (a query that got cheaper, or was completed by another's turn) are skipped when met."""

    def __init__(self, left: dict[str, int]):
        self.pos = {q: i for i, q in enumerate(left)}
        self.left = dict(left)
        self.heap = [(n, i, q) for i, (q, n) in enumerate(left.items())]
        heapq.heapify(self.heap)

    def update(self, q: str, n: int) -> None:
        if q in self.left:
            self.left[q] = n
            heapq.heappush(self.heap, (n, self.pos[q], q))

    def take(self, k: int) -> list[str]:
        """The k cheapest queries still open (fewer when fewer are left); they leave the queue."""
        out: list[str] = []
        while self.heap and len(out) < k:
            n, _, q = heapq.heappop(self.heap)
            if self.left.get(q) == n:
                del self.left[q]
                out.append(q)
        return out

    def done(self, q: str) -> None:
        self.left.pop(q, None)

    def __bool__(self) -> bool:
        return bool(self.left)


def dry_run_estimate(to_pay: dict[str, list[str]], queries: dict[str, str], corpus: Corpus, cfg: LLMRankConfig,
                     ledgers: list[Path], model: str, probe=None) -> dict:
    """The job left to pay and its time on this machine: the rate earlier runs here achieved,
    else a few seconds' timing probe of the embedded model."""
    from retriever_training import label_cost

    job = label_cost.ql_job_size(to_pay, queries, corpus, len(queries))
    rate = label_cost.ledger_rate(list(ledgers), model, cfg.n_threads)
    if rate is None and job.pairs:
        rate = (probe or label_cost.timing_probe)(cfg, label_cost.probe_samples(to_pay, queries, corpus))
    est = label_cost.estimate(job, rate)  # the embedded model costs no money
    if cfg.budget_minutes and est["seconds"] and est["seconds"] > 60 * cfg.budget_minutes:
        share = 60 * cfg.budget_minutes / est["seconds"]
        est["budget_note"] = (f"--budget-minutes {cfg.budget_minutes:g} covers about {int(share * len(queries))} "
                              "of them (more where queries share passages: a passage is paid once)")
    return est


def _make_scorer(cfg: LLMRankConfig, qcfg: QLConfig):
    if cfg.ql_backend == "http":
        from retriever_training.ql_farm import HTTPQLScorer

        return HTTPQLScorer(list(cfg.endpoints), qcfg, model=cfg.ql_model, api_key_env=cfg.ql_api_key_env)
    from retriever_training.query_likelihood import make_scorer

    return make_scorer(cfg.ql_backend, qcfg, device=cfg.ql_device, batch_size=cfg.ql_batch_size)


def _score(scorer, work: list[tuple[str, list[str]]], corpus: Corpus, queries: dict[str, str], commit) -> None:
    """Score each (docid, qids) of one query's turn; commit(docid, [(qid, score)], tokens) per passage
    in-process (its KV prefix read once), per pair on a farm (its servers take passages in parallel)."""
    if hasattr(scorer, "score_many"):
        from retriever_training.ql_farm import PassageWork

        scorer.score_many([PassageWork(d, corpus.by_id[d].title, corpus.by_id[d].text, [(q, queries[q]) for q in qids])
                           for d, qids in work],
                          lambda docid, qid, score, tokens: commit(docid, [(qid, score)], tokens))
        return
    for docid, qids in work:
        p = corpus.by_id[docid]
        new = scorer.score_passage(p.title, p.text, [queries[q] for q in qids])
        commit(docid, list(zip(qids, new)), getattr(scorer, "last_tokens", 0))


def _write(out_path: Path, qid: str, ids: list[str], scores: dict, model: str, cfg: LLMRankConfig) -> None:
    # Stable sort: ties keep the first-stage order.
    order = sorted(range(len(ids)), key=lambda i: -scores[(qid, ids[i])])
    append_jsonl(out_path, LLMRanking(
        qid=qid, docids_in=ids, ranked_docids=[ids[i] for i in order],
        scores=[scores[(qid, ids[i])] for i in order], model=model,
        prompt_id=QUERY_LIKELIHOOD.ref, mode=cfg.mode, n_calls=len(ids)))
