"""Query likelihood over a farm of OpenAI-compatible servers (llm_rank.ql_backend: http).

    distilrag label --corpus my_docs/ --llm_rank.ql_backend=http \
        --llm_rank.endpoints=http://gpu1:8000/v1,http://gpu2:8000/v1 [--llm_rank.ql_model=NAME]

The same score as the in-process scorer (retriever_training/query_likelihood.py): the mean log-prob
of the query's tokens after the passage prompt, read from `/v1/completions` with `echo` and
`logprobs` (the prompt's token log-probs; llama-cpp-python's server and vLLM return them). Each
request is one (passage, query) pair; a passage's pairs go to one server one after the other, so
its prefix cache holds the passage while other servers take other passages. A failed request
(429, 5xx, timeout, refused connection) is retried with backoff, on another server when its own
is down; every finished pair reaches `on_pair` in the calling thread, which commits it to the
content-hash cache at once, so a kill -9 of the labeller or of a server loses no paid pair.
Passages are cut to the context exactly as in-process, with the embedded model's tokenizer.
"""
from __future__ import annotations

import os
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from rag.prompts import QUERY_LIKELIHOOD as PROMPT
from retriever_training.query_likelihood import QLConfig

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class FarmError(RuntimeError):
    """No server could score a pair after every retry: the message names the last error."""


@dataclass(frozen=True)
class PassageWork:
    docid: str
    title: str
    text: str
    queries: list[tuple[str, str]]  # (qid, query text) still to score against this passage


class HTTPQLScorer:
    """Scores (passage, query) pairs on `endpoints` (OpenAI-compatible /v1 base URLs)."""

    def __init__(self, endpoints: list[str], cfg: QLConfig = QLConfig(), model: str = "",
                 api_key_env: str = "", timeout_s: float = 120.0, retries: int = 6,
                 per_endpoint: int = 1, tokenizer=None, down_after: int = 3, backoff_s: float = 0.5,
                 bos_text: str | None = None):
        if not endpoints:
            raise ValueError("llm_rank.endpoints is empty: give one or more OpenAI-compatible /v1 URLs.")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.cfg, self.model, self.timeout_s, self.retries = cfg, model, timeout_s, retries
        self.per_endpoint = per_endpoint
        self._key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._tokenizer = tokenizer  # a llama_cpp.Llama (vocab only) or anything with its tokenize/detokenize
        self.down_after, self.backoff_s = down_after, backoff_s  # consecutive failures before a server is dropped
        self.parallelism = len(self.endpoints) * per_endpoint  # pairs in flight at once
        # llama-cpp-python's server pairs echoed prompt tokens with the right log-probs only when the
        # prompt starts with the BOS token (without one, each value is one position off); the embedded
        # GGUF adds none, so its BOS text is sent first. Another model's servers (vLLM): none.
        self._bos_text = bos_text
        # One vocabulary, loaded and used by one worker at a time: two threads loading it at once
        # ended the process without a word (llama.cpp's loader is not thread-safe).
        self._vocab_lock = threading.Lock()

    # -- prompts ------------------------------------------------------------------------------
    def _vocab(self):
        with self._vocab_lock:
            if self._tokenizer is None:  # the embedded GGUF's vocabulary only: no weights are loaded
                from llama_cpp import Llama

                from rag.models import ensure_llm

                self._tokenizer = Llama(model_path=str(ensure_llm()), vocab_only=True, verbose=False)
            return self._tokenizer

    def bos_text(self) -> str:
        if self._bos_text is None:
            vocab = self._vocab()
            with self._vocab_lock:
                self._bos_text = "" if self.model else vocab.detokenize([vocab.token_bos()], special=True).decode("utf-8")
        return self._bos_text

    def prefix_text(self, title: str, text: str) -> str:
        """The passage prompt, cut to the token budget QueryLikelihoodScorer.prefix_tokens cuts it to."""
        full = PROMPT.template.format(title=title, text=text)
        budget = self.cfg.n_ctx - self.cfg.max_query_tokens - 8
        vocab = self._vocab()
        with self._vocab_lock:
            toks = vocab.tokenize(full.encode("utf-8"), add_bos=False, special=False)
            if len(toks) + 1 <= budget:  # + the BOS the server adds
                return full
            tail = vocab.tokenize(PROMPT.tail.encode("utf-8"), add_bos=False, special=False)
            head = vocab.detokenize(toks[: budget - 1 - len(tail)]).decode("utf-8", errors="ignore")
        return head + PROMPT.tail

    # -- one request ----------------------------------------------------------------------------
    def score_pair(self, client, endpoint: str, prefix: str, query: str) -> tuple[float, int]:
        """(mean log-prob of the query's first max_query_tokens tokens, prompt tokens) on one server."""
        prompt = prefix + " " + query.strip()
        body = {"prompt": self.bos_text() + prompt, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}
        if self.model:
            body["model"] = self.model
        r = client.post(f"{endpoint}/completions", json=body)
        if r.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {r.status_code}")
        r.raise_for_status()
        lp = r.json()["choices"][0]["logprobs"]
        # Prompt tokens from the query's first character on; the one generated token lies past the
        # prompt. Offsets count from after the BOS (llama-cpp-python drops it from the echo).
        picked = [v for off, v in zip(lp["text_offset"], lp["token_logprobs"])
                  if len(prefix) <= off < len(prompt) and v is not None][: self.cfg.max_query_tokens]
        if not picked:
            return float("-inf"), len(lp["token_logprobs"])
        return sum(picked) / len(picked), len(lp["token_logprobs"])

    # -- the farm -------------------------------------------------------------------------------
    def score_many(self, work: list[PassageWork], on_pair: Callable[[str, str, float, int], None]) -> None:
        """Score every pair of `work`; on_pair(docid, qid, score, tokens) runs in this thread as each
        pair finishes. Raises FarmError when no server is left or a pair cannot be scored."""
        todo: queue.Queue = queue.Queue()
        for w in work:
            todo.put(w)
        done: queue.Queue = queue.Queue()
        stop = threading.Event()
        slots = [e for e in self.endpoints for _ in range(self.per_endpoint)]
        alive = [len(slots)]
        lock = threading.Lock()
        threads = [threading.Thread(target=self._worker, args=(e, todo, done, stop, alive, lock), daemon=True)
                   for e in slots]
        for t in threads:
            t.start()
        pending = sum(len(w.queries) for w in work)
        try:
            while pending:
                item = done.get()
                if isinstance(item, BaseException):
                    raise item
                on_pair(*item)
                pending -= 1
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=self.timeout_s)

    def _worker(self, endpoint, todo, done, stop, alive, lock) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        failures = 0
        with httpx.Client(timeout=self.timeout_s, headers=headers) as client:
            while not stop.is_set():
                try:
                    w = todo.get(timeout=0.2)
                except queue.Empty:
                    continue  # another worker may still hand work back
                try:
                    prefix = self.prefix_text(w.title, w.text)
                except Exception as e:  # noqa: BLE001 - a dead thread would leave the caller waiting
                    done.put(FarmError(f"cannot make the prompt of {w.docid}: {type(e).__name__}: {e}"))
                    return
                for i, (qid, query) in enumerate(w.queries):
                    try:
                        score, tokens = self._with_retries(client, endpoint, prefix, query)
                    except _EndpointDown as e:
                        todo.put(PassageWork(w.docid, w.title, w.text, w.queries[i:]))  # to the others
                        failures += 1
                        if failures >= self.down_after:  # gone: leave the work to the other servers
                            with lock:
                                alive[0] -= 1
                                if alive[0] == 0:
                                    done.put(FarmError(f"no endpoint answers any more (last: {endpoint}: {e})"))
                            return
                        time.sleep(min(8.0, 2.0 ** failures))
                        break
                    except Exception as e:  # noqa: BLE001 - reported in the caller's thread
                        done.put(FarmError(f"{endpoint}: {type(e).__name__}: {str(e)[:200]}"))
                        return
                    failures = 0
                    done.put((w.docid, qid, score, tokens))

    def _with_retries(self, client, endpoint: str, prefix: str, query: str) -> tuple[float, int]:
        import httpx

        last = ""
        for attempt in range(self.retries):
            try:
                return self.score_pair(client, endpoint, prefix, query)
            except httpx.ConnectError as e:  # refused: the server is gone (or not up yet)
                raise _EndpointDown(f"ConnectError: {e}") from e
            except (_Retry, httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as e:
                last = f"{type(e).__name__}: {e}"
                time.sleep(min(30.0, self.backoff_s * 2 ** attempt) * (0.5 + random.random()))
        raise _EndpointDown(last)


class _Retry(Exception):
    """A status worth retrying (rate limit, server error)."""


class _EndpointDown(Exception):
    """This endpoint refused or kept failing: the work goes to the others."""
