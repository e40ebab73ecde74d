"""Per-answer checks that need no gold answer: abstention and grounding (rag/grounding.py).

Each answered record gets
    "grounding": {"lexical": {supported, reason}, "llm": {...}}   (the methods asked for)
    "checks":    {"abstained": 0/1, "withheld": 0/1, "citation_repaired": 0/1, "unsupported_lexical": 0/1,
                  "unsupported_llm": 0/1}
    "checks_version": CHECKS_VERSION
and its answer, cited_docids and qa re-derived from the LLM's own text (model_answer when the
chain re-pointed its citation or withheld it) by the chain's rule (rag.grounding.shown_answer), so
older runs are brought to today's rule; qa.citation_precision_model and qa.answer_contains_ref_model
score the text as the LLM wrote it. "abstained" counts the answers shown as no answer, withheld ones
included; "withheld" those the LLM did answer.
An answer is unsupported when its check says the cited passages do not support it; an
abstention is never unsupported (it claims nothing), and a check that could not decide (an
unreadable verifier reply) leaves the value out rather than guessing. On a question set whose
answers are not in the corpus the right outcome is abstention, so there every non-abstaining
answer is wrong and the unsupported rate says how many of those the check would have caught.
"""
from __future__ import annotations

import sys

GROUNDING_CHOICES = ("lexical", "llm", "off")
CHECKS_VERSION = 3  # 2: stemmed lexical check, citations re-pointed; 3: withheld answers (bump on a rule change)


def methods_for(grounding: str) -> tuple[str, ...]:
    """--grounding llm records the lexical verdict too: it is free and the two are compared."""
    if grounding not in GROUNDING_CHOICES:
        raise ValueError(f"--grounding {grounding!r}: choose one of {', '.join(GROUNDING_CHOICES)}")
    return {"off": (), "lexical": ("lexical",), "llm": ("lexical", "llm")}[grounding]


def cited_texts(rec: dict) -> list[str]:
    """The texts of the passages the answer cites (contexts are aligned with the top of `retrieved`)."""
    ctx, pos = rec.get("contexts") or [], {d: i for i, d in enumerate(rec.get("retrieved") or [])}
    return [ctx[pos[d]] for d in rec.get("cited_docids") or [] if pos.get(d, len(ctx)) < len(ctx)]


def needs_checks(rec: dict, methods: tuple[str, ...]) -> bool:
    if rec.get("answer") is None:
        return False
    return rec.get("checks_version") != CHECKS_VERSION or any(m not in (rec.get("grounding") or {})
                                                             for m in methods)


def _rederive(rec: dict) -> dict:
    """`rec` with answer, cited_docids, model_answer and qa as the chain makes them today."""
    from eval.qa_metrics import qa_scores
    from rag.citations import parse_citations
    from rag.grounding import shown_answer
    from rag.prompts import is_no_answer

    model = rec.get("model_answer") or rec["answer"]
    ctx, retrieved, refs = rec.get("contexts") or [], rec.get("retrieved") or [], list(rec.get("references") or [])
    text = shown_answer(model, ctx, rec["question"])
    out = {**rec, "answer": text, "model_answer": model if text != model else None, "no_answer": is_no_answer(text),
           "cited_docids": [retrieved[n - 1] for n in parse_citations(text, len(ctx))]}
    qa = qa_scores(text, refs, ctx, cited_texts(out))
    if qa:
        own = qa_scores(model, refs, ctx, [ctx[n - 1] for n in parse_citations(model, len(ctx))])
        qa["answer_contains_ref_model"] = own["answer_contains_ref"]
        if "citation_precision" in own:
            qa["citation_precision_model"] = own["citation_precision"]
    return {**out, "qa": qa}


def add_checks(rec: dict, methods: tuple[str, ...], llm=None, cache=None, model_id: str = "") -> dict:
    """A copy of `rec` with abstention and the missing grounding verdicts (kept ones are reused)."""
    from rag.errors import scrub
    from rag.grounding import support
    from rag.prompts import is_no_answer

    stale = rec.get("checks_version") != CHECKS_VERSION
    if stale:
        rec = _rederive(rec)
    # Verdicts of an older rule are made again (the LLM's are cached by content: free when the
    # cited passage did not move).
    grounding = {} if stale else dict(rec.get("grounding") or {})
    checks = {} if stale else dict(rec.get("checks") or {})
    abstained = is_no_answer(rec["answer"])
    checks["abstained"] = float(abstained)
    withheld = rec.get("model_answer") is not None and abstained and not is_no_answer(rec["model_answer"])
    checks["withheld"] = float(withheld)
    checks["citation_repaired"] = float(rec.get("model_answer") is not None and not withheld)
    for m in methods:
        if m not in grounding:
            v = support(rec["answer"], cited_texts(rec), rec["question"], method=m, llm=llm, cache=cache,
                        model_id=model_id)
            grounding[m] = {"supported": v.supported, "reason": scrub(v.reason)}
        said = grounding[m]["supported"]
        if abstained or said is not None:
            checks[f"unsupported_{m}"] = 0.0 if abstained else float(said is False)
    return {**rec, "grounding": grounding, "checks": checks, "checks_version": CHECKS_VERSION}


class Checker:
    """Adds the checks to records as they are answered, and to older records lacking them. The
    verifier LLM is made on its first call only: a run whose verdicts are all cached starts none."""

    def __init__(self, grounding: str, llm=None, answers=None, llm_cfg=None):
        self.methods = methods_for(grounding)
        self.llm, self.llm_cfg = llm, llm_cfg
        self.cache = answers.cache if answers is not None and answers.enabled else None
        self.model_id = answers.model_id if answers is not None else ""
        self.failed: list[str] = []

    def complete(self, prompt: str, **kw):
        if self.llm is None:
            from rag.llm import llama_index_llm

            self.llm = llama_index_llm(self.llm_cfg)
        return self.llm.complete(prompt, **kw)

    def __call__(self, rec: dict) -> dict:
        """`rec` with its checks; on a failed verifier call `rec` unchanged (retried next run)."""
        if not needs_checks(rec, self.methods):
            return rec
        try:
            return add_checks(rec, self.methods, llm=self, cache=self.cache, model_id=self.model_id)
        except Exception as e:  # one failed verifier call must not cost the run
            from rag.errors import scrub

            self.failed.append(scrub(f"{type(e).__name__}: {e}")[:200])
            return rec

    def warn(self) -> None:
        if self.failed:
            print(f"warning: {len(self.failed)} grounding checks failed (retried on the next run); "
                  f"the last: {self.failed[-1]}", file=sys.stderr)
            self.failed = []


def check_records(records: list[dict], out, checker: Checker) -> list[dict]:
    """Records answered by an earlier run with less checking get the missing checks; the updated
    records are appended (the last record of a qid wins)."""
    from rag.records import append_jsonl_many

    new = [checker(r) for r in records]
    changed = [n for n, r in zip(new, records) if n is not r]
    if changed:
        append_jsonl_many(out, changed)
    checker.warn()
    return new
