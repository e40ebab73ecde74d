"""Stage 3 — llm_rank: the LLM orders each query's candidates (the teacher's labels).

    distilrag label --config retriever_training/configs/squad_dev.yaml [--dry-run]

In:  candidates.jsonl.gz (CandidateList), the corpus (passage text by docid)
Out: rankings.jsonl (LLMRanking: qid, docids_in, ranked_docids, scores, model, prompt_id, mode,
     n_calls, n_repairs), appended one query at a time; rankings.ledger.json (calls, tokens, cost,
     cache hits per run and in total, first_started), saved every few dozen calls and when a run
     stops, so calls paid in an interrupted run are counted too

Modes (a config value):
  listwise          RankGPT prompt over a sliding window (black-box: reads only the generated
                    permutation); right for strong API models.
  pointwise         "Does the passage answer the query? Yes/No", scored by logit(Yes)-logit(No)
                    from top_logprobs.
  query_likelihood  UPR: mean log p(query | passage) from prompt-token log-probs of the
                    embedded GGUF, in-process. The default for the embedded 1.5B model, the
                    only mode in which it beats the first stage (see README).
Every LLM result goes through the content-hash cache, so an interrupted run resumes and a
re-run pays nothing twice; finished queries are skipped by qid.
"""
from __future__ import annotations

from pathlib import Path

from rag.corpus import Corpus
from rag.llm_cache import LLMCache
from rag.records import CandidateList, read_jsonl
from retriever_training.ranking import MODES, Ledger, LLMRankConfig, ledger_path


def done_qids(out_path: Path) -> set[str]:
    return {r["qid"] for r in read_jsonl(out_path)} if out_path.exists() else set()


def rank_candidates(candidates: list[CandidateList], corpus: Corpus, cfg: LLMRankConfig,
                    out_path: Path, cache: LLMCache | None = None, llm_cfg=None,
                    progress: bool = True, dry_run: bool = False, ledgers: list[Path] = (),
                    scorer=None) -> Ledger:
    """Rank every not-yet-ranked candidate list into `out_path` (resumable), query by query, up to
    cfg.max_queries ranked in all and until cfg.budget_minutes. Returns the ledger. `ledgers`: the
    ledgers of earlier runs whose achieved rate the dry run's time estimate uses."""
    if cfg.mode not in MODES:
        raise ValueError(f"llm_rank.mode must be one of {MODES}, not {cfg.mode!r}")
    done = done_qids(out_path)
    todo = [c for c in candidates if c.qid not in done]
    capped = bool(cfg.max_queries) and len(todo) > max(0, cfg.max_queries - len(done))
    if cfg.max_queries:  # the first ones in order: a later, larger --max-queries continues from there
        todo = todo[: max(0, cfg.max_queries - len(done))]
    missing = {c.docid for cl in todo for c in cl.candidates[: cfg.max_candidates]} - corpus.by_id.keys()
    if missing:
        raise ValueError(f"{len(missing)} candidate docids are not in corpus {corpus.name!r} "
                         f"(e.g. {sorted(missing)[:3]}): were the candidates made from another corpus?")
    cache = cache if cache is not None else LLMCache()  # an empty cache is falsy (__len__)
    if cfg.mode == "query_likelihood":
        from retriever_training.rank_ql import rank_query_likelihood

        ledger = rank_query_likelihood(todo, corpus, cfg, out_path, cache, progress, dry_run, scorer=scorer,
                                       ledgers=[ledger_path(out_path), *ledgers])
    else:
        from retriever_training.rank_chat import rank_with_chat

        ledger = rank_with_chat(todo, corpus, cfg, out_path, cache, llm_cfg, progress, dry_run,
                                ledgers=[ledger_path(out_path), *ledgers])
    ledger.extra["already_done"] = len(done)
    if capped and not ledger.stopped:
        ledger.stopped = "max_queries"
    if dry_run and "estimate" in ledger.extra:
        ledger.extra["estimate"]["already_done"] = len(done)
    return ledger
