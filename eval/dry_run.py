"""`distilrag eval ... --dry-run`: what a run would pay the LLM, before any LLM work.

Retrieval is cheap next to answering, so the dry run does it: for every retriever, every question
its run directory has not answered yet is retrieved and its prompt keyed as the run would key it
(eval/answer_cache.py). A key already in the answer cache costs nothing; a key two retrievers
share (the same top-k in the same order) is paid once. What is left is the number of distinct
prompts to pay; their estimated prompt tokens times a seconds-per-token rate (calibrated from
earlier answers under runs/eval, else a stated default) is the time estimate. With --ragas-n it
also says what the judge will be asked (samples not judged yet x metrics) and, from earlier
judgements by the same judge under runs/eval, how long that takes. Nothing is written.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from rag.pipelines import retrieval_function, slug, spec_identity


@dataclass(frozen=True)
class DryRun:
    questions: int
    retrievers: tuple[str, ...]
    needed: int          # answers the run still lacks, over all retrievers
    in_run_dir: int      # answers already in the run directory (resumed, not asked)
    cached: int          # prompts already in the answer cache
    shared: int          # prompts another retriever pays for in this run
    to_pay: int          # distinct prompts the LLM will answer
    prompt_tokens: int
    s_per_token: float
    rate_source: str
    skipped: tuple[str, ...] = ()
    ragas: tuple[str, ...] = ()   # what --ragas-n will ask the judge, and how long (ragas_lines)

    @property
    def est_seconds(self) -> float:
        return self.prompt_tokens * self.s_per_token

    def lines(self) -> list[str]:
        mins = self.est_seconds / 60
        return [
            f"dry run: {self.questions} questions x {len(self.retrievers)} retrievers; "
            f"{self.in_run_dir} answers already in the run directory, {self.needed} to produce.",
            f"  {self.cached} of those are in the answer cache and {self.shared} repeat another "
            f"retriever's prompt: {self.to_pay} distinct prompts will be paid "
            f"(~{self.prompt_tokens:,} prompt tokens).",
            f"  estimated LLM time: {mins:.1f} min ({self.s_per_token:.4f} s per prompt token, "
            f"{self.rate_source}).",
        ] + [f"  skipped {s}" for s in self.skipped] + list(self.ragas)


def _done_qids(d, spec: str, corpus) -> set[str]:
    """Questions the retriever's directory has answered with the weights its spec means now."""
    from eval.plan import load_done

    ident_path, out = d / "retriever.json", d / "answers.jsonl"
    if not out.exists():
        return set()
    old = json.loads(ident_path.read_text()) if ident_path.exists() else None
    if old is not None and old != {"spec": spec, **spec_identity(spec, corpus)}:
        return set()  # the run will set these answers aside and ask again
    return set(load_done(out, need_answer=True))


def dry_run(cfg, out: str | None = None, llm_cfg=None, cache=None, runs_root=None, judge_cfg=None) -> DryRun:
    from eval.answer_cache import open_answer_cache, passages_of, prompt_tokens, seconds_per_token
    from eval.plan import run_dir_of, select
    from eval.questions import load_questions
    from rag.corpus import load_corpus
    from rag.embedder import EmbedderNotFound
    from rag.errors import scrub
    from rag.settings import runs_dir

    questions, _ = load_questions(cfg)
    corpus = load_corpus(cfg.corpus)
    questions = select(questions, cfg.n, cfg.seed)
    metrics = ()
    if cfg.ragas_n:  # a metric set that cannot run is refused before the retrieval below
        from eval.ragas_eval import JudgeConfig, resolve_metrics

        judge_cfg = judge_cfg or JudgeConfig()
        metrics = resolve_metrics(judge_cfg, all(q.answers for q in questions))
    run_dir = run_dir_of(cfg, corpus, out)
    answers = open_answer_cache(llm_cfg, cache, cfg.answer_cache)
    needed = in_dir = cached = shared = tokens = 0
    paid: set[str] = set()
    skipped = []
    for spec in cfg.retrievers:
        try:
            retrieve = retrieval_function(spec, corpus, cfg.depth)
        except EmbedderNotFound as e:
            skipped.append(f"{spec}: {scrub(str(e))}")
            continue
        done = _done_qids(run_dir / slug(spec), spec, corpus)
        in_dir += sum(1 for q in questions if q.qid in done)
        for q in questions:
            if q.qid in done:
                continue
            needed += 1
            nodes = retrieve(q.query, q.qid)[:cfg.top_k]
            if not nodes:
                continue  # the chain answers "I don't know" without the LLM
            key = answers.key(q.query, nodes)
            if key in paid:
                shared += 1
            elif answers.get(key) is not None:
                cached += 1
            else:
                paid.add(key)
                tokens += prompt_tokens(q.query, passages_of(nodes))
    root = runs_root or runs_dir() / "eval"
    rate, source = seconds_per_token(root)
    ragas = ragas_lines(cfg, judge_cfg, metrics, questions, run_dir, root) if metrics else ()
    return DryRun(len(questions), tuple(cfg.retrievers), needed, in_dir, cached, shared, len(paid),
                  tokens, rate, source, tuple(skipped), tuple(ragas))


def judge_seconds(runs_root, judge: str) -> dict[str, float]:
    """metric -> mean seconds a sample over earlier judgements by `judge` (failures cost time too)."""
    from pathlib import Path

    from rag.records import RecordsError, read_jsonl

    took: dict[str, list[float]] = {}
    for f in sorted(Path(runs_root).glob("*/*/ragas.jsonl")) if Path(runs_root).is_dir() else []:
        try:
            for r in read_jsonl(f):
                if r.get("judge") == judge:
                    for m, e in (r.get("metrics") or {}).items():
                        took.setdefault(m, []).append(float(e.get("seconds") or 0.0))
        except (RecordsError, OSError, TypeError, ValueError, AttributeError):
            continue  # one unreadable run must not stop a dry run
    return {m: sum(v) / len(v) for m, v in took.items()}


def ragas_lines(cfg, judge_cfg, names: tuple[str, ...], questions: list, run_dir, root) -> list[str]:
    """What --ragas-n will judge (the samples lacking any of `names`) and how long it takes (the
    metrics each of them lacks, at this judge's earlier seconds per metric)."""
    from collections import Counter

    from eval.plan import ragas_subset
    from eval.ragas_eval import NON_LLM, missing_metrics
    from rag.llm import LLMConfig

    pick = ragas_subset([q.qid for q in questions], cfg.ragas_n, cfg.seed)
    # the judge pays per question and metric: only the metrics each sample still lacks
    lacking = [missing_metrics(run_dir / slug(spec) / "ragas.jsonl", pick, names) for spec in cfg.retrievers]
    todo = sum(len(m) for m in lacking)
    pairs = Counter(n for m in lacking for ns in m.values() for n in ns)
    paid = [m for m in names if m not in NON_LLM]
    head = f"  RAGAS: {todo} samples to judge x {len(names)} metrics ({', '.join(names)})"
    if not paid:
        return [head + ": string metrics, no judge calls."]
    judge = LLMConfig(endpoint=judge_cfg.endpoint, model=judge_cfg.model).model_name
    secs = judge_seconds(root, judge)
    known = [m for m in paid if m in secs]
    if not known:
        return [f"{head}, judge {judge}: time unknown, no earlier judgement by this judge under {root} "
                "(docs/qa-squad_dev.md has the embedded judge's cost per metric)."]
    per_sample = sum(secs[m] for m in known)
    seconds = sum(pairs[m] * secs[m] for m in known)
    line = (f"{head}, judge {judge}: ~{seconds / 60:.1f} min at {per_sample:.1f} s a sample "
            f"(earlier judgements under {root})")
    unknown = [m for m in paid if m not in secs]
    return [line + (f"; not counted, never timed with this judge: {', '.join(unknown)}" if unknown else ".")]


def main_dry_run(cfg, out, llm_cfg, judge_cfg=None) -> int:
    if cfg.retrieval_only:
        print("dry run: --retrieval-only asks the LLM nothing.")
        return 0
    r = dry_run(cfg, out, llm_cfg, judge_cfg=judge_cfg)
    print("\n".join(r.lines()))
    if cfg.grounding == "llm":
        print("  --grounding llm adds one short verifier call per cited passage of each new answer "
              "(cached the same way).", file=sys.stderr)
    return 0
