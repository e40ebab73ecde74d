"""Ranking prompts kept as data: a template, its id and version (part of every cache key), and
how an answer is read back. Changing a prompt's wording means bumping its version.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_DIGITS = str.maketrans("０１２３４５６７８９٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Prompt:
    id: str
    version: int
    system: str
    user: str
    answer_pattern: str  # what a well-formed answer looks like (validation, not extraction)


LISTWISE = Prompt(
    id="rankgpt-listwise", version=1,
    system="You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.",
    user=("I will provide you with {n} passages, each indicated by a numerical identifier []. "
          "Rank the passages based on their relevance to the search query: {query}\n\n{passages}\n\n"
          "Search Query: {query}\nRank the {n} passages above based on their relevance to the search query. "
          "List them in descending order of relevance using their identifiers, the most relevant first. "
          "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking, "
          "do not say any word or explain."),
    answer_pattern=r"^\s*\[\d+\](\s*>\s*\[\d+\])*\s*$",
)
POINTWISE = Prompt(
    id="yes-no-pointwise", version=1,
    system="You judge whether a passage answers a question.",
    user="Passage: {passage}\n\nQuestion: {query}\n\nDoes the passage answer the question? Answer Yes or No.",
    answer_pattern=r"^\s*(yes|no)\b",
)
PROMPTS = {"listwise": LISTWISE, "pointwise": POINTWISE}


def truncate_words(text: str, n_words: int) -> str:
    if n_words <= 0:
        return text
    words = text.split()
    return text if len(words) <= n_words else " ".join(words[:n_words]) + " ..."


def listwise_messages(query: str, passages: list[str]) -> list[dict]:
    body = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
    return [{"role": "system", "content": LISTWISE.system},
            {"role": "user", "content": LISTWISE.user.format(n=len(passages), query=query, passages=body)}]


def pointwise_messages(query: str, passage: str) -> list[dict]:
    return [{"role": "system", "content": POINTWISE.system},
            {"role": "user", "content": POINTWISE.user.format(query=query, passage=passage)}]


def parse_permutation(answer: str, n: int) -> tuple[list[int], int]:
    """0-based permutation of n items read from a listwise answer, and how many repairs it took.

    Strips <think> blocks, maps non-ASCII digits, drops out-of-range and duplicate ids (one
    repair each), and appends the missing ids in input order (one repair per missing id).
    """
    text = _THINK.sub("", answer or "").translate(_DIGITS)
    seen: list[int] = []
    repairs = 0
    for tok in re.findall(r"\d+", text):
        i = int(tok) - 1
        if not 0 <= i < n or i in seen:
            repairs += 1
            continue
        seen.append(i)
    missing = [i for i in range(n) if i not in seen]
    return seen + missing, repairs + len(missing)


def sliding_windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """RankGPT's back-to-front windows [start, end) over a list of n: the one iterator both the
    real run and the dry-run estimate use, so the estimate counts exactly the calls made."""
    if n <= 0:
        return []
    if window <= 0 or step <= 0:
        raise ValueError("window and step must be positive")
    out, end = [], n
    while True:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0:
            return out
        end -= step
