"""Citations in an answer: "[2]", "[1, 3]", "[ 2 ]" or "Source 2" name the numbered passages it
was given. One pattern for the chain (which passages an answer cites), the harness (answer text
without its citations, for EM/F1) and the app (the [n] that link to their passages).
"""
from __future__ import annotations

import re
from typing import Callable

CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]|\bSource\s+(\d+)\b", re.IGNORECASE)


def parse_citations(text: str, n_sources: int) -> list[int]:
    """Source numbers cited in `text`, in first-seen order, each once, only those in 1..n_sources."""
    seen: list[int] = []
    for m in CITATION.finditer(text):
        for part in re.split(r"[,;]", m.group(1) or m.group(2)):
            n = int(part.strip())
            if 1 <= n <= n_sources and n not in seen:
                seen.append(n)
    return seen


def strip_citations(text: str) -> str:
    """`text` without its citations, whitespace collapsed (what EM/F1 compare)."""
    return " ".join(CITATION.sub(" ", text).split())


def replace_citations(text: str, render: Callable[[list[int], str], str]) -> str:
    """`text` with each citation replaced by `render(numbers, original)` (the app's links)."""
    def sub(m: re.Match) -> str:
        nums = [int(p.strip()) for p in re.split(r"[,;]", m.group(1) or m.group(2))]
        return render(nums, m.group(0))
    return CITATION.sub(sub, text)
