"""Thumbs up/down on answers, kept as an append-only JSONL log for retraining.

    <distilrag home>/feedback.jsonl

One JSON object per line: a `rag.records.Feedback` record plus the corpus it was asked against:
    {"question": "...", "answer": "...", "retriever": "base", "docids": ["56be4db0...", ...],
     "rating": 1, "timestamp": "2026-11-23T04:40:12Z", "corpus": "squad_dev", "schema_version": 1}
`docids` are the retrieved passages in rank order; `rating` is +1 (thumbs up) or -1 (down);
a thumbs-down may carry the user's "reason" (an extra key, in a second line for that answer).
A user who changes their mind appends a second line for the same answer: the last one wins.
The file is a query pool for the retrainer as it is (each line has "question"):
    queries: {source: feedback, file: <distilrag home>/feedback.jsonl}
No Streamlit import here.
"""
from __future__ import annotations

import time
from pathlib import Path


def feedback_path() -> Path:
    from rag.settings import home

    return home() / "feedback.jsonl"


def log_feedback(question: str, answer: str, retriever: str, docids: list[str], rating: int,
                 corpus: str = "", path: Path | None = None, reason: str = "") -> dict:
    """Append one rating (+1/-1) for an answer; returns the line written, as a dict."""
    from rag.records import Feedback, append_jsonl, to_dict

    if rating not in (1, -1):
        raise ValueError(f"rating must be +1 or -1, not {rating!r}")
    rec = Feedback(question=question, answer=answer, retriever=retriever, docids=list(docids),
                   rating=rating, timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    # `corpus` is an extra key: rag.records.from_dict ignores unknown keys, so readers stay compatible.
    line = {**to_dict(rec), "corpus": corpus, **({"reason": reason[:1000]} if reason else {})}
    append_jsonl(path or feedback_path(), line)
    return line


def read_feedback(path: Path | None = None) -> list[dict]:
    """Every logged rating, oldest first (a torn last line from a crash is skipped)."""
    from rag.records import read_jsonl

    path = path or feedback_path()
    return list(read_jsonl(path)) if path.exists() else []


def latest_ratings(path: Path | None = None) -> dict[tuple[str, str, str], int]:
    """(question, answer, retriever) -> the last rating given, since a user may change their mind."""
    return {(d["question"], d["answer"], d["retriever"]): d["rating"] for d in read_feedback(path)}


def summary(path: Path | None = None) -> str:
    ratings = [d.get("rating") for d in read_feedback(path)]
    up, down = ratings.count(1), ratings.count(-1)
    return f"{up} 👍 / {down} 👎 logged" if ratings else "no feedback logged yet"
