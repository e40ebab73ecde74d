"""Query-likelihood teacher (UPR, Sachan et al. 2022): score(q, p) = mean log p(q tokens | passage prompt).

Needs prompt-token log-probabilities, which chat APIs do not return, so it runs the embedded GGUF
in-process through llama-cpp-python. Pairs are grouped by passage: the passage prompt is
evaluated once and its KV cache kept, and each query only pays for its own tokens — cost scales
with unique passages plus query tokens, not with pairs x passage length.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.prompts import QUERY_LIKELIHOOD as PROMPT  # the passage prompt and the tail a cut one keeps


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
        toks = self._tokens(PROMPT.template.format(title=title, text=text), bos=True)
        if len(toks) > budget:
            tail = self._tokens(PROMPT.tail, bos=False)
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
        scores = [self._score_after_prefix(prefix, q) for q in queries]
        # Tokens actually evaluated (the passage once, then each query): the ledger's cost basis.
        self.last_tokens = len(prefix) + sum(len(self._tokens(" " + q.strip(), bos=False)) + 1 for q in queries)
        return scores

    def score_naive(self, title: str, text: str, query: str) -> float:
        """The same score without prefix reuse (re-reads the passage): the reference path in tests."""
        prefix = self.prefix_tokens(title, text)
        self._prefix = None
        self.llm.reset()
        self.llm.eval(prefix[:-1])
        score = self._score_after_prefix(prefix, query)
        self._prefix = None
        return score


class TransformersQLScorer:
    """The same score computed with transformers (GGUF dequantized, or any causal-LM directory),
    batched per passage: the backend for a GPU machine. Scores agree with llama.cpp's to about
    0.01-0.04 nats (measured on SQuAD pairs) — a different runtime, so a different cache key."""

    def __init__(self, model_path: Path, cfg: QLConfig = QLConfig(), device: str = "auto", batch_size: int = 32):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_path = Path(model_path)
        kw = {"gguf_file": model_path.name} if model_path.suffix == ".gguf" else {}
        src = str(model_path.parent if kw else model_path)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tok = AutoTokenizer.from_pretrained(src, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32, **kw).to(self.device).eval()
        self.cfg, self.batch_size = cfg, batch_size

    def _tokens(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def score_passage(self, title: str, text: str, queries: list[str]) -> list[float]:
        import torch

        prefix = self._tokens(PROMPT.template.format(title=title, text=text))
        budget = self.cfg.n_ctx - self.cfg.max_query_tokens - 8
        if len(prefix) > budget:
            tail = self._tokens(PROMPT.tail)
            prefix = prefix[: budget - len(tail)] + tail
        out: list[float] = []
        for i in range(0, len(queries), self.batch_size):
            qs = [self._tokens(" " + q.strip())[: self.cfg.max_query_tokens] for q in queries[i: i + self.batch_size]]
            width = len(prefix) + max(len(q) for q in qs)
            ids = torch.zeros((len(qs), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, q in enumerate(qs):  # right padding: positions of prefix and query are unchanged
                ids[j, : len(prefix) + len(q)] = torch.tensor(prefix + q)
                mask[j, : len(prefix) + len(q)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits[:, len(prefix) - 1: -1], dim=-1)
            for j, q in enumerate(qs):
                if not q:
                    out.append(float("-inf"))
                    continue
                lp = logp[j, torch.arange(len(q)), torch.tensor(q, device=logp.device)]
                out.append(float(lp.mean()))
        self.last_tokens = len(queries) * len(prefix) + sum(len(self._tokens(" " + q)) for q in queries)
        return out


def make_scorer(backend: str, cfg: QLConfig, model_path: Path | None = None, device: str = "auto",
                batch_size: int = 32):
    """The query-likelihood scorer for a backend: "llama_cpp" (CPU, the default) or "transformers"."""
    from rag.models import ensure_llm

    path = Path(model_path) if model_path else ensure_llm()
    if backend == "llama_cpp":
        return QueryLikelihoodScorer(path, cfg)
    if backend == "transformers":
        return TransformersQLScorer(path, cfg, device=device, batch_size=batch_size)
    raise ValueError(f"llm_rank.ql_backend must be llama_cpp or transformers, not {backend!r}")
