"""QA accuracy: SQuAD-official exact match and token F1, and the answer-in-context rate.

In:  a generated answer string, the reference answer strings, the retrieved context texts.
Out: floats in [0, 1] per question ({"em", "f1", "answer_in_context", ...}); the harness averages
     them and bootstraps their differences.

Normalisation follows the official SQuAD v1.1 script (lowercase, drop punctuation, drop the
articles a/an/the, collapse whitespace) so our EM/F1 are comparable with published figures.
Before scoring, the chain's citation markers ([2], [1, 3]) are stripped (rag.citations, the one
pattern the chain and the app use too): they are not part of the answer and would cost F1 on
every cited answer. Citation precision asks the same containment question of the passages the
answer cites: does one of them hold a gold answer string, normalised as EM normalises it?
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable

from rag.citations import strip_citations  # noqa: F401  (re-exported: EM/F1 callers read it here)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """The official script's normalisation: lower, remove punctuation, articles, extra spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def max_over_references(fn, prediction: str, references: Iterable[str]) -> float:
    """The official script scores against each reference and keeps the best."""
    return max((fn(prediction, r) for r in references), default=0.0)


def answer_in_context(references: Iterable[str], contexts: Iterable[str]) -> float:
    """1.0 when some reference answer occurs in some context after normalisation (DPR's
    "has answer"): the retriever gave the reader a chance, whatever the reader then did."""
    ctx = [f" {normalize_answer(c)} " for c in contexts]
    for r in references:
        r = normalize_answer(r)
        if r and any(f" {r} " in c for c in ctx):
            return 1.0
    return 0.0


def citation_precision(references: Iterable[str], cited_passages: list[str]) -> float | None:
    """Share of the cited passages that contain a gold answer string (None: nothing cited, or no
    gold answers to look for: undefined, not 0, so it is left out of the mean)."""
    references = [r for r in references if normalize_answer(r)]
    if not cited_passages or not references:
        return None
    return sum(answer_in_context(references, [p]) for p in cited_passages) / len(cited_passages)


def qa_scores(answer: str, references: list[str], contexts: list[str],
              cited_passages: list[str] | None = None) -> dict[str, float]:
    """Per-question QA metrics for one generated answer (empty dict when there are no references).
    `cited_passages` (the texts the answer cites) adds citation_precision when it is defined."""
    if not references:
        return {}
    pred = strip_citations(answer)
    cp = citation_precision(references, cited_passages or [])
    return ({"citation_precision": cp} if cp is not None else {}) | {
        "em": max_over_references(exact_match, pred, references),
        "f1": max_over_references(token_f1, pred, references),
        # Answers are a sentence, so EM is harsh; containment says the span is in the sentence.
        "answer_contains_ref": float(any(f" {normalize_answer(r)} " in f" {normalize_answer(pred)} "
                                         for r in references if normalize_answer(r))),
        "answer_in_context": answer_in_context(references, contexts),
    }
