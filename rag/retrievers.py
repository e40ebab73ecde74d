"""Retrievers behind LlamaIndex's retriever interface: dense (FAISS), BM25 (bm25s), hybrid (fusion).

A retriever is named by a spec string:
  "base" | "distilled" | <model dir>   dense retrieval with that embedder over its FAISS index
  "bm25"                               BM25 (bm25s, English stemming and stop words)
  "hybrid" | "hybrid:<embedder>"       reciprocal-rank fusion (RRF) of BM25 and a dense retriever
  "hybrid[:<embedder>]@<w>"            weighted score fusion: each list's scores min-max scaled, the
                                       dense one's weighted w and BM25's 1 - w (0 <= w <= 1; the
                                       retrain's verdict fits w for a corpus, retriever_training/verdict.py)
Every retriever returns NodeWithScore whose node id is the passage's docid.
"""
from __future__ import annotations

from typing import Iterable

from rag.corpus import Corpus, load_corpus, passage_node
from rag.metrics import Run

RRF_K = 60  # the constant of Cormack et al. 2009, also LlamaIndex's


def _nodes(corpus: Corpus):
    return [passage_node(p) for p in corpus.passages]


_BM25_CACHE: dict[tuple[str, str], object] = {}


def bm25_retriever(corpus: Corpus, top_k: int):
    """BM25 over the corpus; the bm25s index is built once per corpus version per process."""
    key = (corpus.name, corpus.hash)
    if key not in _BM25_CACHE:
        try:
            from llama_index.retrievers.bm25 import BM25Retriever
        except ImportError as e:  # pragma: no cover - install hint
            raise ImportError("BM25 needs `pip install llama-index-retrievers-bm25 bm25s`.") from e
        import logging

        # bm25s sets its logger to DEBUG: once any library gives the root logger a handler (RAGAS's
        # rouge metric does), every index build would print debug lines.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        _BM25_CACHE[key] = BM25Retriever.from_defaults(nodes=_nodes(corpus), similarity_top_k=min(10, len(corpus)))
    from copy import copy

    r = copy(_BM25_CACHE[key])  # shallow: shares the bm25s index, not the top-k setting
    r.similarity_top_k = min(top_k, len(corpus))
    return r


def dense_retriever(corpus: Corpus, embedder: str, top_k: int, rebuild: bool = False):
    from rag.index import get_index

    return get_index(corpus, embedder, rebuild=rebuild).as_retriever(similarity_top_k=min(top_k, len(corpus)))


def hybrid_retriever(corpus: Corpus, embedder: str, top_k: int, dense_weight: float | None = None):
    """RRF of the dense and BM25 lists, or with `dense_weight` LlamaIndex's relative-score fusion
    (min-max scaled scores, weighted dense_weight and 1 - dense_weight)."""
    from llama_index.core.llms import MockLLM
    from llama_index.core.retrievers import QueryFusionRetriever

    # Fuse deeper lists than we return: fusion needs both rankings' tails to reorder the head.
    depth = max(3 * top_k, 50)
    weighted = dense_weight is not None
    return QueryFusionRetriever(
        [dense_retriever(corpus, embedder, depth), bm25_retriever(corpus, depth)],
        mode="relative_score" if weighted else "reciprocal_rerank",
        retriever_weights=[dense_weight, 1 - dense_weight] if weighted else None,
        similarity_top_k=top_k, num_queries=1, use_async=False,
        llm=MockLLM(),  # never called with num_queries=1; stops LlamaIndex resolving a default LLM
    )


def split_hybrid(spec: str) -> tuple[str, float | None] | None:
    """("<embedder>", dense weight or None for RRF) of a hybrid spec; None for any other spec."""
    if not (spec == "hybrid" or spec.startswith(("hybrid:", "hybrid@"))):
        return None
    body, at, weight = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if not at:
        return body.partition(":")[2] or "base", None
    try:
        w = float(weight)
    except ValueError:
        w = float("nan")
    if not 0.0 <= w <= 1.0:  # nan too
        from rag.errors import UserError

        raise UserError(f"Retriever {spec!r}: the dense weight after '@' must be a number from 0 to 1 "
                        "(e.g. hybrid:distilled@0.3).")
    return body.partition(":")[2] or "base", w


def spec_embedder(spec: str) -> str | None:
    """The dense embedder a retriever spec uses (None for BM25)."""
    if spec == "bm25":
        return None
    hybrid = split_hybrid(spec)
    return hybrid[0] if hybrid else spec


def make_retriever(spec: str, corpus: Corpus | str, top_k: int = 5):
    """Build the retriever a spec string names (see the module docstring)."""
    if isinstance(corpus, str):
        corpus = load_corpus(corpus)
    if spec == "bm25":
        return bm25_retriever(corpus, top_k)
    if hybrid := split_hybrid(spec):
        return hybrid_retriever(corpus, hybrid[0], top_k, dense_weight=hybrid[1])
    return dense_retriever(corpus, spec, top_k)


def retrieve_run(retriever, queries: Iterable[tuple[str, str]], progress: bool = False) -> Run:
    """Run a retriever over (qid, text) pairs into a TREC-style run {qid: {docid: score}}.

    Scores are the retriever's own except that later ranks never outscore earlier ones
    (fusion scores can tie), so the run's order is the retriever's order.
    """
    from tqdm.auto import tqdm

    run: dict[str, dict[str, float]] = {}
    queries = list(queries)
    for qid, text in tqdm(queries, disable=not progress, desc="retrieve", unit="q"):
        nodes = retriever.retrieve(text)
        n = len(nodes)
        run[qid] = {nw.node.node_id: float(n - i) for i, nw in enumerate(nodes)}
    return run
