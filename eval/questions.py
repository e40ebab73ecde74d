"""The questions of an evaluation run: a corpus's own split, or a user's file (--queries, read by
rag.questions: JSONL or CSV/TSV of {qid|_id|id, query|question|text, answers, split}, or one question
a line).

questions_hash identifies the whole set, so a run resumes only over the questions it was started with.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rag.questions import QuestionsError, question_id  # noqa: F401  (part of this module's API)


def questions_hash(questions: list) -> str:
    """Identity of a question set (ids, texts, references): a run resumes only over the same one."""
    import hashlib

    blob = json.dumps(sorted([q.qid, q.query, list(q.answers)] for q in questions), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def eval_qrels(corpus: str, queries: str, qrels_file: str) -> dict | None:
    """The gold a run is scored with: a --qrels file, else the corpus's own when its own questions
    are asked; None when there is none."""
    from rag.corpus import CorpusError, load_qrels
    from rag.metrics import read_qrels

    if qrels_file:
        return read_qrels(qrels_file)
    if queries:
        return None
    try:
        return load_qrels(corpus)
    except CorpusError:
        return None


def load_questions(cfg):
    """(questions, qrels or None); a file's records may carry qid/_id/id and query/question/text.

    With qrels (--qrels, or the corpus's), a file's questions that have neither qrels nor answers
    are left out (with a note): nothing could score them.
    """
    from rag.corpus import CorpusError, load_queries

    if cfg.queries:
        from rag.questions import read_questions

        path = Path(cfg.queries)
        qs = read_questions(path)
        if cfg.split and any(q.split for q in qs):  # a file whose records name their split
            qs = [q for q in qs if q.split == cfg.split]
        if not qs:
            raise QuestionsError(f"{path} holds no questions with split={cfg.split!r}; give --split '' for "
                                 "all of them.")
    else:
        try:
            qs = load_queries(cfg.corpus, cfg.split or None)
        except CorpusError as e:
            raise CorpusError(f"{e} For your own corpus give --queries FILE (JSONL or one question "
                              "per line).") from None
    qrels = eval_qrels(cfg.corpus, cfg.queries, cfg.qrels)
    if qrels is not None and cfg.queries:
        judged = [q for q in qs if q.qid in qrels or q.answers]
        if len(judged) < len(qs):  # e.g. BEIR's queries.jsonl holds every split's queries, qrels one split's
            print(f"note: {len(qs) - len(judged)} of the {len(qs)} questions have neither qrels nor answers "
                  "and are left out.", file=sys.stderr)
            if not judged:
                raise QuestionsError(f"No question of {cfg.queries} has qrels in {cfg.qrels or 'the corpus'}: "
                                     "do the question ids match the qrels' first column?")
        qs = judged
    if qrels is None and qs and not any(q.answers for q in qs):
        print(f"note: none of the {len(qs)} questions has answers and there are no qrels: the report holds the "
              "retrievers' agreement, abstention, grounding and latencies, no accuracy. For accuracy give answer "
              "strings ('answers' or 'answer' in a JSONL or CSV) or --qrels FILE.", file=sys.stderr)
    return [q for q in qs if q.query.strip()], qrels


