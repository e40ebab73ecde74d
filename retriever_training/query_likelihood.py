"""Query-likelihood teacher (UPR, Sachan et al. 2022): score(q, p) = mean log p(q tokens | passage prompt).

Needs prompt-token log-probabilities, which chat APIs do not return, so it runs the embedded GGUF
in-process through llama-cpp-python. Pairs are grouped by passage: the passage prompt is
evaluated once and its KV cache kept, and each query only pays for its own tokens — cost scales
with unique passages plus query tokens, not with pairs x passage length.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROMPT_ID = "upr-query-likelihood"
PROMPT_VERSION = 1
PASSAGE_TEMPLATE = "Passage: {title}. {text}\nPlease write a question based on this passage.\nQuestion:"


@dataclass(frozen=True)
class QLConfig:
    n_ctx: int = 1024         # logits for every position cost n_ctx x vocab floats: keep it small
    n_threads: int = 0        # 0 = every core
    max_query_tokens: int = 64


class QueryLikelihoodScorer:
    def __init__(self, gguf: Path, cfg: QLConfig = QLConfig()):
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - install hint
            raise ImportError("Query likelihood needs `pip install llama-cpp-python`.") from e
        threads = cfg.n_threads or os.cpu_count() or 1
        self.cfg = cfg
        self.llm = Llama(model_path=str(gguf), n_ctx=cfg.n_ctx, n_batch=512, logits_all=True,
                         n_threads=threads, n_threads_batch=threads, verbose=False)
        self._prefix: list[int] | None = None

    def _tokens(self, text: str, bos: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def prefix_tokens(self, title: str, text: str) -> list[int]:
        """The passage prompt's tokens, the passage cut so prompt + query fit the context."""
        budget = self.cfg.n_ctx - self.cfg.max_query_tokens - 8
        toks = self._tokens(PASSAGE_TEMPLATE.format(title=title, text=text), bos=True)
        if len(toks) > budget:
            tail = self._tokens("\nPlease write a question based on this passage.\nQuestion:", bos=False)
            toks = toks[: budget - len(tail)] + tail
        return toks

    def _load_prefix(self, prefix: list[int]) -> None:
        """Evaluate all but the last prefix token once; each query re-feeds that last token so
        the logits predicting its first token come from its own batch."""
        if self._prefix != prefix:
            self.llm.reset()
            self.llm.eval(prefix[:-1])
            self._prefix = prefix

    def _score_after_prefix(self, prefix: list[int], query: str) -> float:
        q = self._tokens(" " + query.strip(), bos=False)[: self.cfg.max_query_tokens]
        if not q:
            return float("-inf")
        start = len(prefix) - 1
        self.llm.n_tokens = start  # eval() drops the KV cache beyond n_tokens, keeping the prefix
        self.llm.eval([prefix[-1]] + q)
        logits = np.asarray(self.llm.scores[start: start + len(q)], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        lp = logits[np.arange(len(q)), q] - logz
        return float(lp.mean())

    def score_passage(self, title: str, text: str, queries: list[str]) -> list[float]:
        """Scores of several queries against one passage, sharing the passage's KV prefix."""
        prefix = self.prefix_tokens(title, text)
        self._load_prefix(prefix)
        return [self._score_after_prefix(prefix, q) for q in queries]

    def score_naive(self, title: str, text: str, query: str) -> float:
        """The same score without prefix reuse (re-reads the passage): the reference path in tests."""
        prefix = self.prefix_tokens(title, text)
        self._prefix = None
        self.llm.reset()
        self.llm.eval(prefix[:-1])
        score = self._score_after_prefix(prefix, query)
        self._prefix = None
        return score


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
