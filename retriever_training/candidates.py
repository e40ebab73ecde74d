"""Stage 2 — candidates: the first-stage retriever's top-N for each query.

    distilrag retrain --config ...   (stage "candidates")

In:  queries.jsonl (Query), the corpus and its index
Out: candidates.jsonl.gz — CandidateList {qid, query, retriever, candidates: [{docid, score, rank}]}

The gold passage is never injected: what the retriever misses, the LLM cannot rank either,
exactly as at query time.
"""
from __future__ import annotations

from dataclasses import dataclass

from rag.corpus import Corpus
from rag.records import Candidate, CandidateList, Query


@dataclass(frozen=True)
class CandidatesConfig:
    retriever: str = "hybrid"   # base | bm25 | hybrid (RRF of BM25 and base dense): the best first stage
    depth: int = 20             # first-stage top-N kept per query (>= llm_rank.max_candidates)

    def __post_init__(self):
        from rag.config import require

        require(self, positive=("depth",))


def make_candidates(corpus: Corpus, queries: list[Query], cfg: CandidatesConfig,
                    progress: bool = True) -> list[CandidateList]:
    from tqdm.auto import tqdm

    from rag.retrievers import make_retriever

    retriever = make_retriever(cfg.retriever, corpus, top_k=cfg.depth)
    out = []
    for q in tqdm(queries, desc=f"candidates ({cfg.retriever})", unit="q", disable=not progress):
        nodes = retriever.retrieve(q.query)
        out.append(CandidateList(qid=q.qid, query=q.query, retriever=cfg.retriever,
                                 candidates=[Candidate(docid=n.node.node_id, score=float(n.score or 0.0), rank=i)
                                             for i, n in enumerate(nodes, 1)]))
    return out
