"""Stage 1 — queries: which questions the LLM will rank candidates for.

    distilrag retrain --config retriever_training/configs/squad_dev.yaml   (stage "queries")

In:  a corpus split (corpora/<name>/queries.jsonl.gz, or a BEIR folder's queries.jsonl + qrels/),
     a user's query log (rag.questions: one query a line, or JSONL with "query"|"question"|"text"
     and optional "qid"|"_id"), the app's feedback log, or nothing: queries are then synthesised by the LLM from sampled passages (InPars/Promptagator style).
Out: queries.jsonl — Query records, deduplicated (case/space-insensitive), `n` at most, seeded
     (the rest of a log or split is the unlabelled pool the ranker scores, `unlabelled_pool`);
     synthetic_queries.jsonl (+ .json, its settings) — `synthetic` > 0: further LLM-written queries
     over the whole corpus, which the ranker, not the LLM, labels.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from rag.config import ConfigError, require
from rag.errors import UserError
from rag.questions import question_key
from rag.records import Query


SOURCES = ("split", "file", "feedback", "synthesize")


class QueriesError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class QueriesConfig:
    source: str = "synthesize"  # a user's corpus has no questions of its own: the LLM writes them
                                # (--queries <log> gives source=file; shipped corpora use their split)
    split: str = "train"       # with source=split: the split no evaluation reads
    file: str = ""             # with source=file/feedback: the query log
    n: int = 1000              # queries to label (the LLM budget; 0 = the whole pool); the rest of a
                               # log or split is the ranker-scored unlabelled pool
    seed: int = 0
    synth_passages: int = 0    # with source=synthesize: passages to sample (0 = n)
    synth_filter_depth: int = 20  # keep a synthetic query only if the base retriever finds its passage in top-N
    # Further queries the LLM writes from passages sampled over the whole corpus, never LLM-ranked:
    # the ranker scores their candidates, so the student also trains on the passages it will serve.
    synthetic: int = 0
    top_up_to: int = 0         # a log shorter than this many queries in all (labelled + the rest) is
                               # topped up with that many more LLM-written ones, ranker-scored (0 = off)
    synth_per_passage: int = 3  # questions per LLM call (the passage is read once for all of them)

    def __post_init__(self):
        require(self, non_negative=("n", "synth_passages", "synthetic", "top_up_to"),
                positive=("synth_filter_depth", "synth_per_passage"), choices={"source": SOURCES})
        if self.source in ("file", "feedback") and not self.file:
            raise ConfigError(f"file: queries.source={self.source} needs the query log: --queries <file> "
                              "(or --queries.file=<path>)")
        if self.source == "split" and not self.split:
            raise ConfigError("split: queries.source=split needs --queries.split=<name>")


def dedupe(queries: list[Query]) -> list[Query]:
    seen, out = set(), []
    for q in queries:
        key = question_key(q.query)
        if key and key not in seen:
            seen.add(key)
            out.append(q)
    return out


def query_pool(cfg: QueriesConfig, corpus_name: str) -> list[Query]:
    """Every query a split or log offers, deduplicated; none for source=synthesize (written on demand)."""
    if cfg.source == "split":
        from rag.corpus import load_queries

        return dedupe(load_queries(corpus_name, cfg.split))
    if cfg.source in ("file", "feedback"):
        return log_pool(cfg.file, corpus_name)[0]
    return []


JUDGING_SPLITS = ("dev", "test")  # the corpus's gold splits the retrain chooses and reports on


def log_pool(path: str, corpus_name: str) -> tuple[list[Query], int]:
    """(the log's distinct queries that may teach, how many were left out): a log's questions that
    are the corpus's own dev or test ones (by id or by words) never teach, or the held-out report
    would judge on questions the retriever was trained on (BEIR's queries.jsonl holds them all)."""
    from rag.corpus import load_queries
    from rag.questions import read_questions

    logged = dedupe(read_questions(path))
    try:
        judging = [q for q in load_queries(corpus_name) if q.split in JUDGING_SPLITS]
    except UserError:  # a corpus without questions of its own
        return logged, 0
    ids, texts = {q.qid for q in judging}, {question_key(q.query) for q in judging}
    kept = [q for q in logged if q.qid not in ids and question_key(q.query) not in texts]
    return kept, len(logged) - len(kept)


def note_own_questions(corpus_name: str) -> None:
    """Before the LLM writes queries: say so when the corpus has questions of its own to label instead
    (a BEIR folder's train split, a shipped corpus run without its config)."""
    from rag.corpus import load_queries

    try:
        train = load_queries(corpus_name, "train")
    except UserError:
        return
    if train:
        print(f"note: corpus {corpus_name!r} has {len(train)} train questions of its own; "
              "--queries.source=split --queries.split=train labels those instead of LLM-written ones")


def select_queries(cfg: QueriesConfig, corpus_name: str) -> list[Query]:
    """The `n` queries the LLM labels: a seeded sample of the split or log (all of it when n = 0)."""
    if cfg.source == "synthesize":
        from retriever_training.synthesize import synthesize_queries

        note_own_questions(corpus_name)
        pool = synthesize_queries(corpus_name, cfg, want=cfg.n)  # distinct already
    elif cfg.source == "split":
        pool = query_pool(cfg, corpus_name)
    else:
        pool, left_out = log_pool(cfg.file, corpus_name)
        if left_out:
            print(f"note: {left_out} queries of {cfg.file} are the corpus's own dev/test questions: left out of "
                  "training, so the held-out report judges on questions the retriever never saw")
    if not pool:
        raise QueriesError(f"No queries to label from queries.source={cfg.source} on corpus {corpus_name!r}.")
    rng = random.Random(cfg.seed)
    return rng.sample(pool, min(cfg.n, len(pool))) if cfg.n else pool


def unlabelled_pool(cfg: QueriesConfig, corpus_name: str, exclude: set[str], n: int,
                    exclude_texts: set[str] = frozenset()) -> list[Query]:
    """The rest of the split or log, `n` at most (seeded), for the ranker to score at no LLM cost:
    every query of a log teaches the student, not only the `queries.n` the LLM labelled. `exclude`
    holds the ids the LLM was given (labelled and held out alike), `exclude_texts` their texts (a
    labels dir written with other ids for the same questions), and none of them comes back here."""
    if n <= 0:
        return []
    texts = {question_key(t) for t in exclude_texts}
    rest = [q for q in query_pool(cfg, corpus_name) if q.qid not in exclude and question_key(q.query) not in texts]
    return random.Random(cfg.seed + 1).sample(rest, min(n, len(rest)))


def synthetic_queries(cfg: QueriesConfig, corpus_name: str, out_dir: Path, progress: bool = True) -> list[Query]:
    """`cfg.synthetic` LLM-written queries at most, from passages sampled over the whole corpus;
    written once with their settings beside them and rewritten when the settings change (the LLM
    cache makes the calls already paid for free)."""
    if cfg.synthetic <= 0:
        return []
    from rag.records import read_jsonl, write_json, write_jsonl

    path, meta_path = out_dir / "synthetic_queries.jsonl", out_dir / "synthetic_queries.json"
    settings = {"corpus": corpus_name, "synthetic": cfg.synthetic, "per_passage": cfg.synth_per_passage,
                "seed": cfg.seed, "filter_depth": cfg.synth_filter_depth}
    if path.exists() and meta_path.exists() and json.loads(meta_path.read_text()).get("settings") == settings:
        return list(read_jsonl(path, Query))
    from rag.llm import LLMConfig
    from retriever_training.synthesize import prompt_of, synthesize_queries

    n_passages = -(-cfg.synthetic // cfg.synth_per_passage)
    made = synthesize_queries(corpus_name, cfg, progress=progress, n_passages=n_passages, seed=cfg.seed + 2,
                              per_passage=cfg.synth_per_passage, want=cfg.synthetic)  # distinct, at most `want`
    write_jsonl(path, made)
    prompt_id, version = prompt_of(cfg.synth_per_passage)
    write_json(meta_path, {"settings": settings, "passages": n_passages, "queries": len(made),
                           "model": LLMConfig.from_env().model_name, "prompt_id": f"{prompt_id}@v{version}"})
    return made
