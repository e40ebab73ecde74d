"""Stage 5 — score_teacher: the trained ranker scores candidate lists (the student's targets).

    distilrag retrain --config ...   (stage "teacher")

In:  <run>/ranker/ (CrossEncoder), candidate lists of the labelled queries and of further
     unlabelled queries (the ranker multiplies the LLM's labels at no LLM cost)
Out: <run>/teacher_scores.jsonl.gz — TeacherScores {qid, docids, scores, teacher, labelled}
"""
from __future__ import annotations

from dataclasses import dataclass

from rag.corpus import Corpus, passage_text
from rag.records import CandidateList, TeacherScores


@dataclass(frozen=True)
class TeacherConfig:
    unlabelled_queries: int = 1000   # extra train-split queries scored by the ranker only
    depth: int = 20                  # candidates scored per query
    batch_size: int = 64


def score_lists(ranker, lists: list[CandidateList], corpus: Corpus, labelled: set[str], teacher: str,
                depth: int, batch_size: int = 64, progress: bool = True) -> list[TeacherScores]:
    import torch
    from tqdm.auto import tqdm

    out = []
    for cl in tqdm(lists, desc="teacher scores", unit="q", disable=not progress):
        ids = [c.docid for c in cl.candidates[:depth]]
        # Raw logits, not the default sigmoid: squashed into (0, 1) they would give the student an
        # almost uniform softmax target (measured: the student then forgot how to rank).
        scores = ranker.predict([(cl.query, passage_text(corpus.by_id[d])) for d in ids], batch_size=batch_size,
                                show_progress_bar=False, activation_fn=torch.nn.Identity())
        out.append(TeacherScores(qid=cl.qid, docids=ids, scores=[float(s) for s in scores],
                                 teacher=teacher, labelled=cl.qid in labelled))
    return out
