"""Stage 1 — queries: which questions the LLM will rank candidates for.

    distilrag retrain --config retriever_training/configs/squad_dev.yaml   (stage "queries")

In:  a corpus split (corpora/<name>/queries.jsonl.gz), a user's query log (one query per line,
     or JSONL with "query" and optional "qid"), the app's feedback log, or nothing: queries are
     then synthesised by the LLM from sampled passages (InPars/Promptagator style).
Out: queries.jsonl — Query records, deduplicated (case/space-insensitive), `n` at most, seeded;
     synthetic_queries.jsonl (+ .json, its settings) — `synthetic` > 0: further LLM-written queries
     over the whole corpus, which the ranker, not the LLM, labels.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from rag.records import Query


@dataclass(frozen=True)
class QueriesConfig:
    source: str = "split"      # split | file | feedback | synthesize
    split: str = "train"       # with source=split
    file: str = ""             # with source=file/feedback
    n: int = 1000              # queries to label (the LLM budget)
    seed: int = 0
    synth_passages: int = 0    # with source=synthesize: passages to sample (0 = n)
    synth_filter_depth: int = 20  # keep a synthetic query only if the base retriever finds its passage in top-N
    # Further queries the LLM writes from passages sampled over the whole corpus, never LLM-ranked:
    # the ranker scores their candidates, so the student also trains on the passages it will serve.
    synthetic: int = 0
    synth_per_passage: int = 3  # questions per LLM call (the passage is read once for all of them)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def dedupe(queries: list[Query]) -> list[Query]:
    seen, out = set(), []
    for q in queries:
        key = _norm(q.query)
        if key and key not in seen:
            seen.add(key)
            out.append(q)
    return out


def _qid(text: str) -> str:
    return "q" + hashlib.sha1(_norm(text).encode()).hexdigest()[:12]


def read_query_file(path: str | Path) -> list[Query]:
    """A user's query log: plain text (one query per line) or JSONL with a "query" field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Query file {path} not found.")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{n}: looks like JSON but does not parse.") from None
            text = d.get("query") or d.get("question") or ""
            if not text:
                raise ValueError(f"{path}:{n}: JSON query lines need a 'query' field.")
            out.append(Query(qid=str(d.get("qid") or _qid(text)), query=text, answers=d.get("answers", [])))
        else:
            out.append(Query(qid=_qid(line), query=line))
    return out


def select_queries(cfg: QueriesConfig, corpus_name: str) -> list[Query]:
    if cfg.source == "split":
        from rag.corpus import load_queries

        pool = load_queries(corpus_name, cfg.split)
    elif cfg.source in ("file", "feedback"):
        if not cfg.file:
            raise ValueError(f"queries.source={cfg.source} needs queries.file=<path>.")
        pool = read_query_file(cfg.file)
    elif cfg.source == "synthesize":
        from retriever_training.synthesize import synthesize_queries

        pool = synthesize_queries(corpus_name, cfg)
    else:
        raise ValueError(f"queries.source must be split, file, feedback or synthesize, not {cfg.source!r}")
    pool = dedupe(pool)
    rng = random.Random(cfg.seed)
    picked = rng.sample(pool, min(cfg.n, len(pool))) if cfg.n else pool
    return picked


def unlabelled_pool(cfg: QueriesConfig, corpus_name: str, labelled: set[str], n: int) -> list[Query]:
    """Further queries of the same split for the ranker to score (no LLM cost)."""
    if cfg.source != "split" or n <= 0:
        return []
    from rag.corpus import load_queries

    rest = [q for q in dedupe(load_queries(corpus_name, cfg.split)) if q.qid not in labelled]
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
    made = dedupe(synthesize_queries(corpus_name, cfg, progress=progress, n_passages=n_passages,
                                     seed=cfg.seed + 2, per_passage=cfg.synth_per_passage))[:cfg.synthetic]
    write_jsonl(path, made)
    prompt_id, version = prompt_of(cfg.synth_per_passage)
    write_json(meta_path, {"settings": settings, "passages": n_passages, "queries": len(made),
                           "model": LLMConfig.from_env().model_name, "prompt_id": f"{prompt_id}@v{version}"})
    return made
