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
    unlabelled_queries: int = 1000   # further log/split queries the LLM never saw, scored by the ranker
                                     # only: the student learns from twice the queries at no LLM cost
    depth: int = 4                   # candidates scored per query, = distill.docs_per_query: the
                                     # student gains little from a fifth to eighth candidate
    batch_size: int = 16             # pairs per forward: 64 pads more (2 cores, bf16: the shipped stage 356 s vs 381 s)
    precision: str = "auto"          # auto: bf16 autocast where the CPU/GPU does bf16 natively

    def __post_init__(self):
        from rag.config import require

        require(self, positive=("depth", "batch_size"), non_negative=("unlabelled_queries",),
                choices={"precision": ("auto", "bf16", "fp32")})


def score_lists(ranker, lists: list[CandidateList], corpus: Corpus, labelled: set[str], teacher: str,
                depth: int, batch_size: int = 16, progress: bool = True, bf16: bool = False,
                chunk: int = 200) -> list[TeacherScores]:
    from tqdm.auto import tqdm

    from rag.rerank import cross_encoder_scores

    out = []
    with tqdm(total=len(lists), desc="teacher scores", unit="q", disable=not progress) as bar:
        # Many lists per predict call: the pairs are sorted by length across lists.
        for start in range(0, len(lists), chunk):
            part = lists[start:start + chunk]
            ids = [[c.docid for c in cl.candidates[:depth]] for cl in part]
            pairs = [(cl.query, passage_text(corpus.by_id[d])) for cl, docids in zip(part, ids) for d in docids]
            scores = cross_encoder_scores(ranker, pairs, batch_size, bf16)
            pos = 0
            for cl, docids in zip(part, ids):
                out.append(TeacherScores(qid=cl.qid, docids=docids, scores=scores[pos:pos + len(docids)],
                                         teacher=teacher, labelled=cl.qid in labelled))
                pos += len(docids)
            bar.update(len(part))
    return out
