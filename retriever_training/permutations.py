"""Reading a listwise ranking back and cutting the lists it is asked over: the permutation in an
answer (repaired), RankGPT's sliding windows, passages cut to a word budget. The prompts
themselves are data in rag/prompts.py.
"""
from __future__ import annotations

import re

_DIGITS = str.maketrans("０１２３４５６７８９٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)


def truncate_words(text: str, n_words: int) -> str:
    if n_words <= 0:
        return text
    words = text.split()
    return text if len(words) <= n_words else " ".join(words[:n_words]) + " ..."


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
