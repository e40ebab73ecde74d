"""Listwise and pointwise ranking for stage 3 (llm_rank) through any OpenAI-compatible endpoint.

Listwise (RankGPT): back-to-front sliding windows, the LLM's permutation read and repaired.
Pointwise: one Yes/No request per pair, score = logprob(Yes) - logprob(No) from top_logprobs.
Requests go through the content-hash cache; queries run with bounded concurrency; the `openai`
client retries 429/5xx/timeouts with exponential backoff (its `max_retries`).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from rag.corpus import Corpus
from rag.llm_cache import LLMCache, cache_key
from rag.prompts import LISTWISE, POINTWISE
from rag.records import CandidateList, LLMRanking, append_jsonl
from retriever_training.permutations import parse_permutation, sliding_windows, truncate_words
from retriever_training.ranking import Ledger, LLMRankConfig, budget_over, save_ledger

NO_LOGPROB = -20.0  # a token absent from top_logprobs is at most this likely


def listwise_messages(query: str, passages: list[str]) -> list[dict]:
    body = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return [{"role": "system", "content": LISTWISE.system},
            {"role": "user", "content": LISTWISE.user.format(n=len(passages), query=query, passages=body)}]


def pointwise_messages(query: str, passage: str) -> list[dict]:
    return [{"role": "system", "content": POINTWISE.system},
            {"role": "user", "content": POINTWISE.user.format(query=query, passage=passage)}]


def _est_tokens(messages: list[dict]) -> int:
    return int(sum(len(m["content"].split()) for m in messages) * 1.35) + 8


class ChatRanker:
    def __init__(self, client, model: str, cfg: LLMRankConfig, cache: LLMCache, ledger: Ledger):
        self.client, self.model, self.cfg, self.cache, self.ledger = client, model, cfg, cache, ledger

    def _call(self, prompt, messages: list[dict], params: dict, dry_run: bool):
        key = cache_key(self.model, prompt.id, prompt.version, messages, params)
        hit = self.cache.get(key)
        if hit is not None:
            self.ledger.cache_hits += 1
            return hit
        self.ledger.calls += 1
        self.ledger.est_tokens += _est_tokens(messages)  # the unit of the time estimate (label_cost)
        if dry_run:
            self.ledger.prompt_tokens += _est_tokens(messages)
            self.ledger.completion_tokens += params.get("max_tokens", 1)
            return None
        resp = self.client.chat.completions.create(model=self.model, messages=messages, **params)
        choice = resp.choices[0]
        value = {"text": choice.message.content or ""}
        if params.get("logprobs") and getattr(choice, "logprobs", None) and choice.logprobs.content:
            value["top_logprobs"] = {t.token: t.logprob for t in choice.logprobs.content[0].top_logprobs}
        usage = getattr(resp, "usage", None)
        if usage:
            self.ledger.prompt_tokens += usage.prompt_tokens or 0
            self.ledger.completion_tokens += usage.completion_tokens or 0
        self.cache.put(key, value)
        return value

    def listwise(self, cl: CandidateList, corpus: Corpus, dry_run: bool) -> LLMRanking:
        order = [c.docid for c in cl.candidates[: self.cfg.max_candidates]]
        ids_in = list(order)
        n_calls = n_repairs = 0
        params = {"temperature": 0.0, "max_tokens": 8 * self.cfg.window}
        for start, end in sliding_windows(len(order), self.cfg.window, self.cfg.step):
            sub = order[start:end]
            texts = [truncate_words(corpus.by_id[d].text, self.cfg.passage_words) for d in sub]
            value = self._call(LISTWISE, listwise_messages(cl.query, texts), params, dry_run)
            n_calls += 1
            if value is None:
                continue
            perm, repairs = parse_permutation(value["text"], len(sub))
            n_repairs += repairs
            order[start:end] = [sub[i] for i in perm]
        return LLMRanking(qid=cl.qid, docids_in=ids_in, ranked_docids=order, model=self.model,
                          prompt_id=LISTWISE.ref, mode="listwise",
                          n_calls=n_calls, n_repairs=n_repairs)

    def pointwise(self, cl: CandidateList, corpus: Corpus, dry_run: bool) -> LLMRanking:
        ids = [c.docid for c in cl.candidates[: self.cfg.max_candidates]]
        params = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 10}
        scores, malformed = [], 0
        for d in ids:
            text = truncate_words(corpus.by_id[d].text, self.cfg.passage_words)
            value = self._call(POINTWISE, pointwise_messages(cl.query, text), params, dry_run)
            if value is None:
                scores.append(0.0)
                continue
            s, ok = yes_no_score(value)
            malformed += not ok
            scores.append(s)
        order = sorted(range(len(ids)), key=lambda i: -scores[i])
        return LLMRanking(qid=cl.qid, docids_in=ids, ranked_docids=[ids[i] for i in order],
                          scores=[scores[i] for i in order], model=self.model,
                          prompt_id=POINTWISE.ref, mode="pointwise",
                          n_calls=len(ids), n_repairs=malformed)


def yes_no_score(value: dict) -> tuple[float, bool]:
    """logprob(Yes) - logprob(No); falls back to the generated word when no logprobs came back."""
    top = value.get("top_logprobs") or {}
    yes = max((lp for t, lp in top.items() if t.strip().lower() == "yes"), default=None)
    no = max((lp for t, lp in top.items() if t.strip().lower() == "no"), default=None)
    if yes is not None or no is not None:
        return (yes if yes is not None else NO_LOGPROB) - (no if no is not None else NO_LOGPROB), True
    word = value.get("text", "").strip().lower()
    if word.startswith("yes"):
        return 1.0, True
    if word.startswith("no"):
        return -1.0, True
    return 0.0, False


def rank_with_chat(todo: list[CandidateList], corpus: Corpus, cfg: LLMRankConfig, out_path: Path,
                   cache: LLMCache, llm_cfg=None, progress: bool = True, dry_run: bool = False,
                   client=None, ledgers: list[Path] = (), clock=time.perf_counter) -> Ledger:
    from tqdm.auto import tqdm

    from rag.llm import LLMConfig, openai_client

    llm_cfg = llm_cfg or LLMConfig.from_env()
    if cfg.mode == "pointwise":  # its score is logprob(Yes) - logprob(No): the server must return them
        llm_cfg = replace(llm_cfg, logprobs=True)
    model = llm_cfg.model_name
    if client is None and not dry_run:
        client = openai_client(llm_cfg)
    ledger = Ledger(mode=cfg.mode, model=model, extra={"threads": cfg.concurrency})
    ranker = ChatRanker(client, model, cfg, cache, ledger)
    rank_one = ranker.listwise if cfg.mode == "listwise" else ranker.pointwise
    t0 = clock()
    bar = tqdm(total=len(todo), desc=f"llm_rank ({cfg.mode})", unit="q", disable=not progress)

    def work(cl: CandidateList) -> LLMRanking | None:
        if not dry_run and budget_over(cfg, t0, clock()):  # queries not yet started are left for a resume
            ledger.stopped = "budget"
            return None
        return rank_one(cl, corpus, dry_run)

    # Bounded concurrency; records are appended in input order, each as soon as it and those before it finish.
    try:
        with ThreadPoolExecutor(max_workers=max(1, cfg.concurrency)) as pool:
            for rec in pool.map(work, todo):
                if rec is None:
                    continue
                if not dry_run:
                    append_jsonl(out_path, rec)
                    ledger.queries_done += 1
                    ledger.checkpoint(out_path, cfg)
                ledger.repairs += rec.n_repairs
                ledger.malformed += rec.n_repairs > 0 and cfg.mode == "pointwise"
                bar.update(1)
    except BaseException:  # interrupted or failed: the calls paid so far still count
        if not dry_run:
            ledger.seconds = round(clock() - t0, 1)
            ledger.add_cost(cfg)
            save_ledger(out_path, ledger, status="interrupted")
        raise
    bar.close()
    ledger.seconds = round(clock() - t0, 1)
    ledger.add_cost(cfg)
    if dry_run:
        from retriever_training import label_cost

        job = label_cost.JobSize(queries=len(todo), pairs=ledger.calls, unique_passages=len(
            {c.docid for cl in todo for c in cl.candidates[: cfg.max_candidates]}),
            prompt_tokens=ledger.est_tokens, completion_tokens=ledger.completion_tokens)
        rate = label_cost.ledger_rate(list(ledgers), model, cfg.concurrency)  # an endpoint is never probed: it costs
        ledger.extra["estimate"] = label_cost.estimate(job, rate, cfg.price_in_per_mtok, cfg.price_out_per_mtok)
    else:
        save_ledger(out_path, ledger, status="stopped" if ledger.stopped else "finished")
    return ledger
