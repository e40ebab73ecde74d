"""Answers cached by content, in the same persistent LLM cache as labelling (rag/llm_cache.py).

Key = sha256 of canonical JSON of (answering model id, QA prompt id + version, the question, the
exact passages in order (docid, title, text), generation params). Two retrievers that hand the
LLM the same top-k pay one call, a rerun pays none; reordering passages, another model (weights
hash for the embedded one, endpoint + model name otherwise) or a new prompt version is a new key.

The cached value keeps the answer's text and the latencies it was produced with, so a cached
answer's record still reports what answering it cost, and the dry run calibrates its estimate
from them.
"""
from __future__ import annotations

from dataclasses import dataclass

# Without earlier answers to calibrate from: the embedded 1.5B model on 2 cores answered a
# top-5 prompt (~800 tokens) in ~15 s (tests/eval/test_real_eval.py), prompt reading dominating.
DEFAULT_S_PER_TOKEN = 0.018


def answer_model_id(llm_cfg=None) -> str:
    """Who answers: the embedded model by its weights' hash, else the endpoint and model name."""
    from rag.errors import public_endpoint
    from rag.llm import LLMConfig
    from rag.models import DEFAULT_LLM

    cfg = llm_cfg or LLMConfig.from_env()
    if cfg.is_local:
        return f"{DEFAULT_LLM.name}@{DEFAULT_LLM.sha256[:12]}"
    return f"{public_endpoint(cfg.endpoint)}|{cfg.model_name}"


def generation_params(llm_cfg=None) -> dict:
    from rag.llm import LLMConfig

    cfg = llm_cfg or LLMConfig.from_env()
    return {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "n_ctx": cfg.n_ctx}


def passages_of(nodes) -> list[dict]:
    """What the prompt is built from, in order: the key must change whenever the prompt would."""
    return [{"docid": nw.node.node_id, "title": nw.node.metadata.get("title", ""),
             "text": nw.node.get_content()} for nw in nodes]


def answer_key(model_id: str, question: str, passages: list[dict], params: dict,
               prompt_id: str | None = None, prompt_version: int | None = None) -> str:
    from rag.llm_cache import cache_key
    from rag.prompts import QA

    return cache_key(model_id, prompt_id or QA.id,
                     QA.version if prompt_version is None else prompt_version,
                     {"question": question.strip(), "passages": passages}, params)


def prompt_tokens(question: str, passages: list[dict]) -> int:
    """A tokenizer-free estimate (words x 1.35, as the labelling ledger counts) plus the template."""
    words = len(question.split()) + sum(len(p["text"].split()) + len(p["title"].split()) for p in passages)
    return int(words * 1.35) + 70


@dataclass(frozen=True)
class AnswerCache:
    """The cache and what identifies the answering LLM; `enabled=False` asks every question anew."""
    cache: object            # rag.llm_cache.LLMCache
    model_id: str
    params: dict
    enabled: bool = True

    def key(self, question: str, nodes) -> str:
        return answer_key(self.model_id, question, passages_of(nodes), self.params)

    def get(self, key: str) -> dict | None:
        hit = self.cache.get(key) if self.enabled else None
        return hit if isinstance(hit, dict) and isinstance(hit.get("text"), str) else None

    def put(self, key: str, text: str, timings: dict, n_tokens: int) -> None:
        if self.enabled:
            self.cache.put(key, {"text": text, "timings": timings, "prompt_tokens_est": n_tokens})


def open_answer_cache(llm_cfg=None, cache=None, enabled: bool = True) -> AnswerCache:
    from rag.llm_cache import LLMCache

    return AnswerCache(cache if cache is not None else LLMCache(), answer_model_id(llm_cfg),
                       generation_params(llm_cfg), enabled)


def cached_answer(question: str, hit: dict, nodes, name: str):
    """A chain Answer from a cached text: its citations parsed against these (identical) passages."""
    from rag.chain import make_answer, sources_of

    return make_answer(question, hit["text"], sources_of(nodes), name, hit.get("timings"))


def seconds_per_token(runs_root) -> tuple[float, str]:
    """(seconds per estimated prompt token, where it came from): earlier answers' LLM time over
    their prompt size, from run directories' answer records (cached answers excluded: they cost
    nothing and would flatter the estimate)."""
    from pathlib import Path

    from rag.records import RecordsError, read_jsonl

    secs = toks = n = 0
    for f in sorted(Path(runs_root).glob("*/*/answers.jsonl")) if Path(runs_root).is_dir() else []:
        try:
            for r in read_jsonl(f):
                t = r.get("timings") or {}
                if r.get("error") or r.get("cached") or not r.get("contexts") or "total_s" not in t:
                    continue
                llm_s = t["total_s"] - t.get("retrieve_s", 0.0)
                if llm_s > 0:
                    secs += llm_s
                    toks += prompt_tokens(r.get("question", ""),
                                          [{"text": c, "title": ""} for c in r["contexts"]])
                    n += 1
        except (RecordsError, OSError, TypeError, KeyError):
            continue  # one unreadable run must not stop a dry run
    if n and toks:
        return secs / toks, f"calibrated from {n} earlier answers under {runs_root}"
    return DEFAULT_S_PER_TOKEN, (f"default {DEFAULT_S_PER_TOKEN} s per prompt token (the embedded model "
                                 "on 2 cores); no earlier answers to calibrate from")
