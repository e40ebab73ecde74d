"""Which queries teach, which judge: the retrain's query splits, decided before any LLM or training time.

- The LLM-labelled queries minus a held-out fraction (`ranker.heldout_fraction`, stable by qid)
  train the ranker; the held-out ones are never seen by the ranker or the student. They measure
  the ranker's agreement with the LLM and, on a corpus without a gold dev split, choose the
  student's checkpoint and judge it against the base, with the LLM's order as graded relevance.
- The student learns from the training part of the labelled queries plus the unlabelled pool
  (the rest of the log or split, and synthetic queries), all scored by the ranker.
`preflight` says what cannot run on this input (no dev split and nothing held out, no query to
label, no query left to train on) before labelling starts.
"""
from __future__ import annotations

from rag.config import ConfigError
from rag.records import CandidateList, LLMRanking, Query
from retriever_training.train_ranker import is_heldout

# Graded relevance from the LLM's order: its top 3 get 3, 2, 1. nDCG@10 then rewards finding what
# the LLM put first; the weak tail of its list (the first stage's misses) counts for nothing.
LLM_QREL_GRADES = 3


def heldout_ids(qids, fraction: float) -> set[str]:
    return {q for q in qids if is_heldout(q, fraction)}


def teacher_lists(cands: list[CandidateList], extra: list[CandidateList], labelled: set[str],
                  heldout: set[str]) -> list[CandidateList]:
    """The candidate lists the teacher scores and the student trains on: the labelled queries that
    are not held out, then the unlabelled pool."""
    return [c for c in cands if c.qid in labelled and c.qid not in heldout] + \
        [c for c in extra if c.qid not in labelled and c.qid not in heldout]


def llm_qrels(rankings: list[LLMRanking], grades: int = LLM_QREL_GRADES) -> dict[str, dict[str, int]]:
    return {r.qid: {d: grades - i for i, d in enumerate(r.ranked_docids[:grades])} for r in rankings}


def split_queries(corpus_name: str, split: str, qrels: dict) -> list[Query]:
    """The split's queries that have gold passages; none when the split is "" or the corpus lacks it."""
    from rag.corpus import CorpusError, load_queries

    if not split or not qrels:
        return []
    try:
        return [q for q in load_queries(corpus_name, split) if q.qid in qrels]
    except CorpusError:
        return []


def dev_set(corpus_name: str, qrels: dict, heldout_rankings: list[LLMRanking], queries: dict[str, str],
            n: int, seed: int) -> tuple[list[Query], dict, str]:
    """(dev queries, their qrels, where they come from) for the student's checkpoint selection: the
    corpus's gold dev split, else the held-out labelled queries judged by the LLM's order."""
    from retriever_training.distill import dev_subset

    gold = split_queries(corpus_name, "dev", qrels)
    if gold:
        return dev_subset(gold, n, seed), qrels, "dev split (gold qrels)"
    held = [Query(qid=r.qid, query=queries[r.qid]) for r in heldout_rankings]
    dev = dev_subset(held, n, seed)
    graded = llm_qrels([r for r in heldout_rankings if r.qid in {q.qid for q in dev}])
    return dev, graded, "held-out labelled queries (the LLM's order as graded relevance)"


def preflight(cfgs: dict, qrels: dict) -> dict:
    """What this input allows, from the config and the query source alone (no LLM, no training).
    Raises a ConfigError naming what cannot run and what to change."""
    from retriever_training.queries import query_pool

    corpus_name, q, frac = cfgs["label"].corpus, cfgs["queries"], cfgs["ranker"].heldout_fraction
    gold_dev = bool(split_queries(corpus_name, "dev", qrels))
    pool = len(query_pool(q, corpus_name)) if q.source == "split" else (q.n or 0)
    if q.source in ("file", "feedback"):
        from retriever_training.queries import log_pool

        kept, left_out = log_pool(q.file, corpus_name)
        pool = len(kept)
        if not kept and left_out:
            raise ConfigError(f"every query of {q.file} is one of the corpus's own dev/test questions, which the "
                              "retrain judges on and so never trains on: give a log of other questions, or leave "
                              "out --queries to let the LLM write them")
    n_label = min(q.n, pool) if q.n else pool
    if not gold_dev and n_label * frac < 1:
        raise ConfigError(
            f"corpus {corpus_name!r} has no dev split with gold labels, so the student's checkpoint is chosen on "
            f"held-out labelled queries, but {n_label} labelled x ranker.heldout_fraction {frac} holds out none: "
            "raise --queries.n or --ranker.heldout_fraction (e.g. 0.1)")
    test = len(split_queries(corpus_name, cfgs["run"].test_split, qrels))
    return {"dev": "split" if gold_dev else "heldout", "labelled_planned": n_label, "pool": pool,
            "test": bool(test), "test_queries": test}


def check_selected(cfgs: dict, cands: list[CandidateList], plan: dict) -> None:
    """On the queries actually selected, before the LLM ranks them: something held out when it must
    judge, something left to train on, and lists long enough for the student."""
    frac, depth = cfgs["ranker"].heldout_fraction, cfgs["distill"].docs_per_query
    held = heldout_ids((c.qid for c in cands), frac)
    if plan["dev"] == "heldout" and not held:
        raise ConfigError(f"none of the {len(cands)} selected queries falls in the held-out fraction "
                          f"({frac}) that must choose the student's checkpoint on this corpus (it has no gold "
                          "dev split): raise --queries.n or --ranker.heldout_fraction")
    if len(held) == len(cands):
        raise ConfigError(f"all {len(cands)} selected queries are held out (ranker.heldout_fraction {frac}): "
                          "none is left to train the ranker; lower --ranker.heldout_fraction or raise --queries.n")
    if not any(len(c.candidates) >= depth for c in cands):
        raise ConfigError(f"no query has {depth} first-stage candidates (distill.docs_per_query): the corpus "
                          "is too small for it; lower --teacher.depth and --distill.docs_per_query together")
