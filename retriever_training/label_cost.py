"""What a labelling job will cost before it runs: pairs, passages, prompt tokens, wall time, money.

    distilrag label  --corpus my_docs/ --queries my_questions.txt --dry-run
    distilrag retrain --corpus my_docs/ --queries my_questions.txt --dry-run

In:  the work left to pay (JobSize: the pairs not in the LLM cache), the labelling ledgers of earlier
     runs on this machine, or a timing probe of the embedded model on a few real pairs
Out: an estimate {pairs, unique_passages, prompt_tokens, seconds, tokens_per_s, rate_source, cost_usd}
     (`estimate`, the one arithmetic the dry-run, the progress bar's start and the tests use)

Query-likelihood tokens are counted the way the scorer pays them: each passage prompt once, then
each query's tokens. The rate is in those same estimated tokens per second (the ledger records
`est_tokens` next to the real `prompt_tokens`), so a biased words-to-tokens ratio cancels out.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

TOKENS_PER_WORD = 1.35     # Qwen's tokenizer on English prose
PASSAGE_OVERHEAD = 16      # the prompt template around each passage
QUERY_TOKENS = 16          # a typical question plus the re-fed last prompt token
PROBE_PASSAGES = 3         # the timing probe: a few seconds of the embedded model
WRITE_MORE = 3             # LLM-written questions: at most this many times the planned calls, to replace
                           # the questions the filter drops (synthesize)
# A generated token costs what ~3.5 prompt tokens do on a CPU (decoding is memory-bound: the 1.5B
# model decoded ~19 tokens/s where it read ~71 prompt tokens/s on 2 cores).
DECODE_SLOWDOWN = 3.5
SYNTH_PROMPT_TOKENS = 220  # the few-shot question-writing prompt around each passage
QUESTION_TOKENS = 20       # one written question


@dataclass(frozen=True)
class JobSize:
    queries: int
    pairs: int
    unique_passages: int
    prompt_tokens: int
    completion_tokens: int = 0


@dataclass(frozen=True)
class Rate:
    tokens_per_s: float   # estimated prompt tokens per second (see the module docstring)
    load_s: float         # one-off: loading the model
    source: str           # "ledger (N earlier runs on this machine)" | "timing probe" | ...


def passage_tokens(text: str, title: str = "") -> int:
    return int(len(f"{title} {text}".split()) * TOKENS_PER_WORD) + PASSAGE_OVERHEAD


def query_tokens(query: str) -> int:
    return max(QUERY_TOKENS, int(len(query.split()) * TOKENS_PER_WORD) + 2)


def ql_job_size(to_pay: dict[str, list[str]], queries: dict[str, str], corpus, n_queries: int) -> JobSize:
    """The query-likelihood work of `to_pay` (docid -> qids whose pair is not cached)."""
    tokens = sum(passage_tokens(corpus.by_id[d].text, corpus.by_id[d].title)
                 + sum(query_tokens(queries[q]) for q in qids) for d, qids in to_pay.items() if qids)
    return JobSize(queries=n_queries, pairs=sum(len(q) for q in to_pay.values()),
                   unique_passages=sum(1 for q in to_pay.values() if q), prompt_tokens=tokens)


def estimate(job: JobSize, rate: Rate | None, price_in_per_mtok: float = 0.0,
             price_out_per_mtok: float = 0.0) -> dict:
    """The estimate: seconds = load + tokens / rate (None without a rate); money from the price table."""
    out = {"queries": job.queries, "pairs": job.pairs, "unique_passages": job.unique_passages,
           "prompt_tokens": job.prompt_tokens,
           "cost_usd": round(job.prompt_tokens / 1e6 * price_in_per_mtok
                             + job.completion_tokens / 1e6 * price_out_per_mtok, 4),
           "seconds": None, "tokens_per_s": None, "rate_source": "none: no earlier run on this machine"}
    if not job.pairs:  # everything is ranked or cached: nothing to pay, no rate needed
        out.update(seconds=0.0, rate_source="nothing to pay: every pair is ranked or cached")
    elif rate is not None and rate.tokens_per_s > 0:
        work = (job.prompt_tokens + DECODE_SLOWDOWN * job.completion_tokens) / rate.tokens_per_s
        out.update(seconds=round((rate.load_s if job.pairs else 0.0) + work, 1),
                   tokens_per_s=round(rate.tokens_per_s, 1), rate_source=rate.source)
    return out


def machine_id() -> str:
    """This machine, as the ledger records it (a hash: committed ledgers must not name hosts)."""
    raw = f"{platform.node()}|{platform.machine()}|{os.cpu_count()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def ledger_rate(ledgers: list[Path], model: str, threads: int) -> Rate | None:
    """Estimated tokens per second actually achieved by earlier runs of `model` on this machine
    with the same thread setting (runs that paid for at least a few seconds of work)."""
    me, tokens, seconds, load, n = machine_id(), 0, 0.0, [], 0
    for path in ledgers:
        try:
            runs = json.loads(path.read_text()).get("runs", [])
        except (OSError, ValueError, AttributeError):
            continue
        for r in runs:
            if (r.get("machine") != me or r.get("model") != model or r.get("extra", {}).get("threads") != threads
                    or r.get("est_tokens", 0) <= 0 or r.get("seconds", 0) < 2):
                continue
            work = r["seconds"] - r.get("extra", {}).get("load_s", 0.0)
            if work > 0:
                tokens, seconds, n = tokens + r["est_tokens"], seconds + work, n + 1
                load.append(r.get("extra", {}).get("load_s", 0.0))
    if not n:
        return None
    return Rate(tokens / seconds, max(load), f"ledger ({n} earlier run{'s' * (n > 1)} on this machine)")


def timing_probe(cfg, samples: list[tuple[str, str, list[str]]]) -> Rate:
    """Load the query-likelihood scorer and time it on a few (title, text, queries) samples:
    a few seconds. Nothing is cached: the dry run spends nothing."""
    from retriever_training.query_likelihood import QLConfig, make_scorer

    t = time.perf_counter()
    scorer = make_scorer(cfg.ql_backend, QLConfig(n_threads=cfg.n_threads), device=cfg.ql_device,
                         batch_size=cfg.ql_batch_size)
    load = time.perf_counter() - t
    tokens, t = 0, time.perf_counter()
    for title, text, queries in samples:
        scorer.score_passage(title, text, queries)
        tokens += passage_tokens(text, title) + sum(query_tokens(q) for q in queries)
    return Rate(tokens / max(time.perf_counter() - t, 1e-6), load, f"timing probe ({len(samples)} passages)")


def probe_samples(to_pay: dict[str, list[str]], queries: dict[str, str], corpus) -> list:
    """The first few passages of the job, each with up to two of its queries."""
    out = []
    for d, qids in to_pay.items():
        if qids:
            p = corpus.by_id[d]
            out.append((p.title, p.text, [queries[q] for q in qids[:2]]))
        if len(out) == PROBE_PASSAGES:
            break
    return out


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    m = round(seconds / 60)
    return f"{seconds:.0f} s" if seconds < 90 else f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def synthesis_line(what: str, est: dict) -> str:
    """The dry run's line for LLM-written queries (`what`: what they are for)."""
    rate = f" at {est['tokens_per_s']:.0f} tokens/s" if est.get("tokens_per_s") else f" ({est.get('rate_source')})"
    return (f"to write {what}: {est['queries']} questions, {est['pairs']} LLM calls not cached, "
            f"~{est['prompt_tokens']:,} prompt tokens: ~{fmt_duration(est.get('seconds'))} on this machine{rate} "
            f"(more, up to {WRITE_MORE}x, where the filter drops questions)")


def cost_line(est: dict) -> str:
    """The dry run's one line."""
    rate = (f" at {est['tokens_per_s']:.0f} tokens/s from the {est['rate_source']}" if est.get("tokens_per_s")
            else f" ({est.get('rate_source')})")
    money = f", ${est['cost_usd']:.2f}" if est.get("cost_usd") else ""
    budget = f"; {est['budget_note']}" if est.get("budget_note") else ""
    return (f"to label: {est['queries']} queries, {est['pairs']} pairs, {est['unique_passages']} unique passages, "
            f"~{est['prompt_tokens']:,} prompt tokens: ~{fmt_duration(est.get('seconds'))} on this machine"
            f"{rate}{money}{budget}")
