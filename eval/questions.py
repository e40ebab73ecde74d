"""The questions of an evaluation run: a corpus's own split, or a user's file (--queries).

    JSONL: {qid|_id|id, query|question|text, answers, split} per line (qid optional)
    text:  one question per line

A question without a qid gets question_id(text), a hash of its words, so inserting or removing
a line never gives old answers to other questions; questions_hash identifies the whole set, so a
run resumes only over the questions it was started with. Every bad input (missing file, a folder,
not UTF-8, binary, empty, a qid given twice) is one UserError line naming the file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rag.errors import UserError


class QuestionsError(UserError, ValueError):
    pass


def question_id(text: str) -> str:
    """A plain-text question's id: a hash of its words, so inserting a line never shifts other ids."""
    import hashlib

    return "q-" + hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:12]


def questions_hash(questions: list) -> str:
    """Identity of a question set (ids, texts, references): a run resumes only over the same one."""
    import hashlib

    blob = json.dumps(sorted([q.qid, q.query, list(q.answers)] for q in questions), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _text(v) -> str:
    return v if isinstance(v, str) else ""


def _jsonl_questions(path: Path) -> list:
    from rag.records import Query, read_jsonl

    qs, seen, no_text = [], {}, 0
    for i, d in enumerate(read_jsonl(path), 1):
        text = _text(d.get("query", d.get("question", d.get("text", ""))))
        if not text.strip():
            no_text += 1
            continue
        qid = d.get("qid", d.get("_id", d.get("id")))
        qid = question_id(text) if qid is None or str(qid) == "" else str(qid)
        if qid in seen:
            raise QuestionsError(f"{path}: qid {qid!r} appears twice (records {seen[qid]} and {i}); "
                                 "give every question its own qid.")
        seen[qid] = i
        answers = d.get("answers") or []
        qs.append(Query(qid=qid, query=text, split=_text(d.get("split", "")),
                        answers=[answers] if isinstance(answers, str) else [str(a) for a in answers]))
    if no_text and not qs:
        raise QuestionsError(f"{path} holds no questions: none of its {no_text} records has a 'query' "
                             "(or 'question'/'text') string.")
    if no_text:
        print(f"warning: {path}: {no_text} records without a 'query' (or 'question'/'text') string "
              "were skipped.", file=sys.stderr)
    return qs


def _text_questions(path: Path) -> list:
    from rag.records import Query

    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise QuestionsError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8.") from None
    if "\x00" in raw:
        raise QuestionsError(f"{path} holds binary data; give a text file with one question per "
                             "line, or a JSONL of {{qid, query, answers}}.")
    qs, first = [], {}
    for n, line in enumerate(raw.splitlines(), 1):
        if line.strip():
            qid = question_id(line)
            if qid not in first:
                first[qid] = n
                qs.append(Query(qid=qid, query=line.strip()))
    repeats = sum(1 for ln in raw.splitlines() if ln.strip()) - len(qs)
    if repeats:
        print(f"warning: {path}: {repeats} repeated questions are asked once.", file=sys.stderr)
    return qs


def load_questions(cfg):
    """(questions, qrels or None); a file's records may carry qid/_id/id and query/question/text.

    A JSONL record without a qid, and every line of a text file, gets question_id(text); a qid
    given twice is an error naming it; a text file's repeated lines are asked once (with a warning).
    """
    from rag.corpus import CorpusError, load_qrels, load_queries
    from rag.metrics import read_qrels

    if cfg.queries:
        path = Path(cfg.queries)
        if not path.exists():
            raise QuestionsError(f"Questions file {path} not found.")
        if path.is_dir():
            raise QuestionsError(f"--queries {path} is a folder; give a file: JSONL of "
                                 "{qid, query, answers} or one question per line.")
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            qs = _jsonl_questions(path)
            if cfg.split and any(q.split for q in qs):
                qs = [q for q in qs if q.split == cfg.split]
        elif path.suffix == ".json":
            raise QuestionsError(f"{path}: give questions as JSONL (one JSON object per line, "
                                 "named .jsonl) or as text, one question per line.")
        else:  # plain text: one question per line
            qs = _text_questions(path)
        if not qs:
            raise QuestionsError(f"{path} holds no questions" + (f" with split={cfg.split!r}" if cfg.split else "")
                                 + "; give JSONL of {qid, query, answers} or one question per line.")
    else:
        try:
            qs = load_queries(cfg.corpus, cfg.split or None)
        except CorpusError as e:
            raise CorpusError(f"{e} For your own corpus give --queries FILE (JSONL or one question "
                              "per line).") from None
    qrels = None
    if cfg.qrels:
        qrels = read_qrels(cfg.qrels)
    elif not cfg.queries:
        try:
            qrels = load_qrels(cfg.corpus)
        except CorpusError:
            qrels = None
    return [q for q in qs if q.query.strip()], qrels


