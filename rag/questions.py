"""Question files, read one way by the retrain (a query log), the harness (--queries) and a BEIR
corpus folder (its queries.jsonl).

    JSONL: {qid|_id|id, query|question|text, answers|answer, split} per line (qid optional; an
           answer a string, a list, or SQuAD's {"text": [...]}); BEIR's
           queries.jsonl ({"_id", "text", "metadata"}) and the app's feedback.jsonl are such files
    CSV / TSV (.csv, .tsv): a header row naming a query|question|text column (qid|_id|id and
           answer|answers optional; several answers separated by "|")
    text:  one question per line

A question without a qid gets question_id(text), a hash of its words, so inserting or removing a
line never gives old answers or labels to other questions. A question repeated without a qid is
kept once (with a warning); a qid given twice is an error naming it. Every bad input (missing
file, a folder, not UTF-8, binary, empty) is one UserError line naming the file.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from rag.errors import UserError
from rag.records import Query

FORMATS = ("a text file with one question a line, JSONL with a 'query' (or 'question'/'text') field, or "
           "CSV/TSV with such a column")


class QuestionsError(UserError, ValueError):
    pass


def question_key(text: str) -> str:
    """What two texts of one question share (case and spacing ignored): how a query log, LLM-written
    questions and the labelled set tell a question already taken from a new one."""
    return " ".join(text.lower().split())


def question_id(text: str) -> str:
    """A question's id when its file gives none: a hash of its words."""
    return "q-" + hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:12]


def _text(v) -> str:
    return v if isinstance(v, str) else ""


def _answers(d: dict) -> list[str]:
    """"answers" or "answer": a string, a list of strings, or SQuAD/Hugging Face's {"text": [...]}."""
    v = d.get("answers", d.get("answer"))
    if isinstance(v, dict):
        v = v.get("text")
    if isinstance(v, str):
        return [v] if v.strip() else []
    return [str(a) for a in v if str(a).strip()] if isinstance(v, list) else []


def _from_records(path: Path, records) -> list[Query]:
    qs, seen, no_text, repeats = [], {}, 0, 0
    for i, d in enumerate(records, 1):
        if not isinstance(d, dict):
            raise QuestionsError(f"{path}:{i}: a JSON object per line is expected; give {FORMATS}.")
        text = _text(d.get("query", d.get("question", d.get("text", ""))))
        if not text.strip():
            no_text += 1
            continue
        given = d.get("qid", d.get("_id", d.get("id")))
        given = "" if given is None else str(given)
        qid = given or question_id(text)
        if qid in seen:
            if not given:
                repeats += 1
                continue
            raise QuestionsError(f"{path}: qid {qid!r} appears twice (records {seen[qid]} and {i}); "
                                 "give every question its own qid.")
        seen[qid] = i
        qs.append(Query(qid=qid, query=text.strip(), split=_text(d.get("split", "")),
                        answers=_answers(d)))
    if no_text and not qs:
        raise QuestionsError(f"{path} holds no questions: none of its {no_text} records has a 'query' "
                             "(or 'question'/'text') string.")
    if no_text:
        print(f"warning: {path}: {no_text} records without a 'query' (or 'question'/'text') string "
              "were skipped.", file=sys.stderr)
    if repeats:
        print(f"warning: {path}: {repeats} repeated questions are kept once.", file=sys.stderr)
    return qs


def _lines(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise QuestionsError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8.") from None
    if "\x00" in raw:
        raise QuestionsError(f"{path} holds binary data; give {FORMATS}.")
    return [ln.strip() for ln in raw.splitlines() if ln.strip()]


def _looks_jsonl(lines: list[str]) -> bool:
    """A log named .txt whose lines are JSON objects is read as JSONL (what a user exported); a
    question that merely starts with "{" is not one."""
    return bool(lines) and lines[0].replace(" ", "").startswith('{"')


def _table_records(path: Path, lines: list[str]) -> list[dict]:
    """Rows of a CSV/TSV as records: the header names the columns (case-insensitive)."""
    import csv

    rows = list(csv.reader(lines, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if not {"query", "question", "text"} & set(header):
        raise QuestionsError(f"{path}: the first row must name the columns, one of them 'query', 'question' or "
                             f"'text' (it reads {rows[0] if rows else []}).")
    out = []
    for row in rows[1:]:
        d = {h: v.strip() for h, v in zip(header, row)}
        answers = d.pop("answers", d.pop("answer", ""))
        out.append({**d, "answers": [a.strip() for a in answers.split("|") if a.strip()]})
    return out


def read_questions(path: str | Path) -> list[Query]:
    """The questions of a file (see the module docstring); raises QuestionsError on bad input."""
    path = Path(path).expanduser()
    if not path.exists():
        raise QuestionsError(f"Questions file {path} not found; give {FORMATS}.")
    if path.is_dir():
        raise QuestionsError(f"{path} is a folder; give a file: {FORMATS}.")
    if path.suffix == ".json":
        raise QuestionsError(f"{path}: give questions as JSONL (one JSON object per line, named .jsonl) "
                             "or as text, one question per line.")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        from rag.records import read_jsonl

        qs = _from_records(path, read_jsonl(path))
    elif path.suffix.lower() in (".csv", ".tsv"):
        qs = _from_records(path, _table_records(path, _lines(path)))
    else:
        lines = _lines(path)
        if _looks_jsonl(lines):
            records = []
            for n, line in enumerate(lines, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    raise QuestionsError(f"{path}:{n}: looks like JSON but does not parse.") from None
            qs = _from_records(path, records)
        else:
            qs = _from_records(path, ({"query": ln} for ln in lines))
    if not qs:
        raise QuestionsError(f"{path} holds no questions; give {FORMATS}.")
    return qs
