"""Query-likelihood teacher (UPR, Sachan et al. 2022): score(q, p) = mean log p(q tokens | passage prompt).

Needs prompt-token log-probabilities, which chat APIs do not return, so it runs the embedded GGUF
in-process through llama.cpp's C API (the bindings llama-cpp-python ships). Work is grouped by
passage, and its cost is the floor of this machine's prompt evaluation:
- the passage prompt is evaluated once, with no output logits at all (llama-cpp-python's
  `logits_all` would project every prefix position onto the 152k-token vocabulary and copy it);
- that passage's queries then go through ONE decode, each in its own sequence sharing the
  passage's KV cells, with logits only at the positions that predict a query token — one batch
  of ~10 x 15 tokens instead of ten small ones (small batches run well below the prompt-eval
  rate on a CPU).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.prompts import QUERY_LIKELIHOOD as PROMPT  # the passage prompt and the tail a cut one keeps


@dataclass(frozen=True)
class QLConfig:
    n_ctx: int = 1024         # the passage prompt's budget (prompt + query fit it): part of the cache key
    n_threads: int = 0        # 0 = every core
    max_query_tokens: int = 64


N_BATCH = 512        # tokens per llama_decode: a passage prompt, or one group of its queries
MAX_SEQUENCES = 16   # queries decoded together (each its own KV sequence over the shared prefix)
# Batching moves a score by ~0.01-0.03 nats (llama.cpp's quantized kernels round a row differently
# by its place in the batch), as flash attention would; a relevant passage leads by >0.5 nats.


class QueryLikelihoodScorer:
    """llama.cpp in-process: `score_passage(title, text, queries)` -> mean log-probs."""

    def __init__(self, gguf: Path, cfg: QLConfig = QLConfig(), max_sequences: int = MAX_SEQUENCES):
        try:
            import llama_cpp as L
            from llama_cpp._logger import set_verbose
        except ImportError as e:  # pragma: no cover - install hint
            raise ImportError("Query likelihood needs `pip install llama-cpp-python`.") from e
        set_verbose(False)  # llama.cpp's load and graph logs: errors only
        self.L, self.cfg = L, cfg
        threads = cfg.n_threads or os.cpu_count() or 1
        L.llama_backend_init()
        self.model = L.llama_model_load_from_file(str(gguf).encode("utf-8"), L.llama_model_default_params())
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf}")
        cp = L.llama_context_default_params()
        # Room for the longest passage prompt plus one full batch of queries behind it.
        cp.n_ctx, cp.n_batch, cp.n_ubatch = cfg.n_ctx + N_BATCH, N_BATCH, N_BATCH
        self.max_sequences = max_sequences
        cp.n_seq_max, cp.kv_unified = max_sequences + 1, True  # sequence 0 holds the passage
        cp.n_threads = cp.n_threads_batch = threads
        # Off, as llama-cpp-python (and its server) default to: the CPU's flash attention rounds
        # queries to f16 and moves scores by ~0.02 nats, and cached labels came from this path.
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context for query likelihood")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(N_BATCH, 0, max_sequences + 1)
        self._prefix: list[int] | None = None
        self.last_tokens = 0

    def __del__(self):  # pragma: no cover - interpreter shutdown order varies
        try:
            self.L.llama_batch_free(self.batch)
            self.L.llama_free(self.ctx)
            self.L.llama_model_free(self.model)
        except Exception:
            pass

    def token_bos(self) -> int:
        return self.L.llama_vocab_bos(self.vocab)

    def _tokens(self, text: str, bos: bool) -> list[int]:
        raw = text.encode("utf-8")
        buf = (self.L.llama_token * (len(raw) + 8))()
        n = self.L.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), bos, False)
        if n < 0:
            raise RuntimeError(f"llama.cpp could not tokenize a text of {len(raw)} bytes")
        return list(buf[:n])

    def prefix_tokens(self, title: str, text: str) -> list[int]:
        """The passage prompt's tokens, the passage cut so prompt + query fit the context."""
        budget = self.cfg.n_ctx - self.cfg.max_query_tokens - 8
        toks = self._tokens(PROMPT.template.format(title=title, text=text), bos=True)
        if len(toks) > budget:
            tail = self._tokens(PROMPT.tail, bos=False)
            toks = toks[: budget - len(tail)] + tail
        return toks

    def _query_tokens(self, query: str) -> list[int]:
        return self._tokens(" " + query.strip(), bos=False)[: self.cfg.max_query_tokens]

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence, wants logits) rows."""
        b = self.batch
        b.n_tokens = len(rows)
        for i, (tok, pos, seq, out) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, out
            b.seq_id[i][0] = seq
        if self.L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama.cpp failed to evaluate a batch (context full?)")

    def _load_prefix(self, prefix: list[int]) -> None:
        """Evaluate all but the last prefix token once, into sequence 0, without logits; each
        query re-feeds that last token so the logits predicting its first token are its own."""
        if self._prefix == prefix:
            return
        self.L.llama_memory_clear(self.mem, True)
        self._prefix = None
        head = prefix[:-1]
        for i in range(0, len(head), N_BATCH):
            self._decode([(t, i + j, 0, False) for j, t in enumerate(head[i: i + N_BATCH])])
        self._prefix = prefix

    def _mean_log_prob(self, index: int, targets: list[int]) -> float:
        """Mean log p(target_j) over the batch rows index..index+len(targets)-1. Those rows are
        consecutive outputs, so their logits are one contiguous block."""
        block = np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, index),
                                      shape=(len(targets), self.n_vocab)).astype(np.float64)
        m = block.max(axis=1)
        logz = m + np.log(np.exp(block - m[:, None]).sum(axis=1))
        return float((block[np.arange(len(targets)), targets] - logz).mean())

    def _score_group(self, prefix: list[int], qtoks: list[list[int]]) -> list[float]:
        """One decode for several queries, sequence k+1 for query k, over the shared prefix."""
        start, L = len(prefix) - 1, self.L
        rows, at = [], []
        for k, q in enumerate(qtoks):
            L.llama_memory_seq_cp(self.mem, 0, k + 1, 0, start)
            at.append(len(rows))
            # [last prefix token] + q: the logits at each row but the last predict the next token.
            rows += [(t, start + j, k + 1, j < len(q)) for j, t in enumerate([prefix[-1]] + q)]
        try:
            self._decode(rows)
            return [self._mean_log_prob(i, q) for i, q in zip(at, qtoks)]
        finally:
            for k in range(len(qtoks)):
                L.llama_memory_seq_rm(self.mem, k + 1, -1, -1)

    def _groups(self, order: list[int], qtoks: list[list[int]]):
        """Queries packed into decodes of <= N_BATCH rows (a query is its tokens + 1) and
        <= max_sequences queries."""
        group, rows = [], 0
        for k in order:
            need = len(qtoks[k]) + 1
            if group and (len(group) == self.max_sequences or rows + need > N_BATCH):
                yield group
                group, rows = [], 0
            group.append(k)
            rows += need
        if group:
            yield group

    def score_passage(self, title: str, text: str, queries: list[str]) -> list[float]:
        """Scores of several queries against one passage, sharing the passage's KV prefix."""
        prefix = self.prefix_tokens(title, text)
        self._load_prefix(prefix)
        qtoks = [self._query_tokens(q) for q in queries]
        scores = [float("-inf")] * len(qtoks)  # an empty query has no likelihood
        for group in self._groups([k for k, q in enumerate(qtoks) if q], qtoks):
            for k, v in zip(group, self._score_group(prefix, [qtoks[k] for k in group])):
                scores[k] = v
        # Tokens actually evaluated (the passage once, then each query): the ledger's cost basis.
        self.last_tokens = len(prefix) + sum(len(q) + 1 for q in qtoks if q)
        return scores

    def score_naive(self, title: str, text: str, query: str) -> float:
        """The reference path in tests: a fresh KV cache per query, one query per decode, in
        sequence 0 (no shared cells, no batching of queries)."""
        prefix, q = self.prefix_tokens(title, text), self._query_tokens(query)
        if not q:
            return float("-inf")
        self._prefix = None
        self._load_prefix(prefix)
        start = len(prefix) - 1
        self._decode([(t, start + j, 0, j < len(q)) for j, t in enumerate([prefix[-1]] + q)])
        score = self._mean_log_prob(0, q)
        self.L.llama_memory_clear(self.mem, True)
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
