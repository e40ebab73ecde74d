"""What an evaluation run asks and has: its config, the seeded question subsets, its directory
and the answers it already holds (read by the run, its dry run and its report alike).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

IR_DEPTH = 20


@dataclass(frozen=True)
class EvalConfig:
    corpus: str = "squad_dev"
    split: str = "test"
    queries: str = ""                 # questions file; "" = the corpus's own queries for `split`
    qrels: str = ""                   # qrels TSV; "" = the corpus's own, if it has one
    retrievers: tuple[str, ...] = ("base", "distilled", "bm25", "hybrid")
    n: int = 0                        # seeded subset of the questions; 0 = all
    seed: int = 0
    top_k: int = 5                    # passages the LLM answers from
    depth: int = IR_DEPTH             # ranks kept in run files (recall@20 needs 20)
    retrieval_only: bool = False
    ragas_n: int = 0                  # seeded, paired subset judged by RAGAS; 0 = none
    name: str = ""
    grounding: str = "lexical"        # lexical (free) | llm (lexical too, + a verifier call) | off
    answer_cache: bool = True         # False: ask the LLM even for a prompt answered before
    round_size: int = 50              # questions every retriever answers before the next round starts


def default_retrievers(corpus: str) -> tuple[str, ...]:
    """What `eval` compares when no --retrievers is named: the four of EvalConfig and the corpus's
    measured best pipeline (its published verdict's winner, rag.pipelines.best_spec) when that is
    none of them, so the default comparison includes what the chat serves."""
    from rag.pipelines import best_spec

    best = best_spec(corpus, fallback="")
    return EvalConfig.retrievers + ((best,) if best and best not in EvalConfig.retrievers else ())


def select(questions: list, n: int, seed: int) -> list:
    """A seeded subset that keeps file order (the same n and seed give the same questions)."""
    if not n or n >= len(questions):
        return list(questions)
    keep = set(random.Random(seed).sample(sorted(q.qid for q in questions), n))
    return [q for q in questions if q.qid in keep]


def ragas_subset(qids: list[str], m: int, seed: int) -> list[str]:
    """The questions RAGAS judges: one seeded draw shared by every retriever (paired)."""
    qids = sorted(qids)
    return qids if m >= len(qids) else sorted(random.Random(f"ragas-{seed}").sample(qids, m))


def load_done(path: Path, need_answer: bool) -> dict[str, dict]:
    """Finished records by qid (last one wins); failed or incomplete records are redone."""
    from rag.records import read_jsonl

    done: dict[str, dict] = {}
    if path.exists():
        for r in read_jsonl(path):
            if r.get("error") or (need_answer and r.get("answer") is None):
                done.pop(r["qid"], None)
            else:
                done[r["qid"]] = r
    return done


def run_dir_of(cfg: EvalConfig, corpus, out: str | None) -> Path:
    from rag.settings import runs_dir

    name = cfg.name or "-".join(p for p in (corpus.name, cfg.split or "all", f"n{cfg.n}" if cfg.n else "",
                                            "ir" if cfg.retrieval_only else "") if p)
    return Path(out) if out else runs_dir() / "eval" / name
