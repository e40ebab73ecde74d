"""Retriever specs of the harness: their directory names, the weights they resolve to, and the
retrieval function they build (first stage, then an optional reranker).

    base | distilled | bm25 | hybrid | hybrid:<embedder> | <model dir>   [+ranker | +<cross-encoder dir>]
"""
from __future__ import annotations

import sys
from pathlib import Path


def slug(spec: str) -> str:
    """A directory name for a retriever spec (a model dir becomes rag.embedder.path_label of it;
    "hybrid:<model dir>" keeps its prefix, so it never shares the dense model's directory)."""
    from rag.embedder import path_label

    def part(p: str) -> str:
        kind, sep, model = p.partition(":") if p.startswith("hybrid:") else ("", "", p)
        return kind + sep + (path_label(model) if ("/" in model or "\\" in model) else model)

    return "+".join(part(p) for p in spec.split("+")).replace(":", "-")


def retriever_identity(spec: str, corpus=None) -> dict:
    """The weights every model of a spec resolves to now. "distilled", "+ranker" and a run's
    student/ mean other models after a retrain: answers kept under the same name must not be
    resumed as theirs. An unpublished ranker is None and an unresolvable embedder marks the spec
    unresolved: building the retriever then says why."""
    from rag.embedder import EmbedderNotFound, resolve_embedder, weights_hash
    from rag.retrievers import spec_embedder

    name, reranker = split_spec(spec)
    ident: dict = {}
    try:
        if (emb := spec_embedder(name)) is not None:
            ident["embedder"] = resolve_embedder(emb, corpus).weights_hash
        if reranker:
            path = reranker_path(reranker, corpus)
            ident["reranker"] = weights_hash(path) if path is not None else None
    except EmbedderNotFound:
        ident["unresolved"] = True
    return ident


def split_spec(spec: str) -> tuple[str, str | None]:
    retriever, _, reranker = spec.partition("+")
    return retriever, (reranker or None)


def reranker_path(reranker: str, corpus=None) -> Path | None:
    """The cross-encoder a spec's "+<reranker>" names: "ranker" is the one published for `corpus`
    (None if none)."""
    from rag.embedder import published_path

    path = published_path("ranker", corpus) if reranker == "ranker" else reranker
    return Path(path) if path is not None else None


def build_retrieval(spec: str, corpus, depth: int):
    """A function question -> nodes (first stage, then the reranker if the spec names one)."""
    from llama_index.core.schema import QueryBundle

    from rag.embedder import EmbedderNotFound
    from rag.index import IndexMismatchError, get_index
    from rag.retrievers import make_retriever, spec_embedder

    name, reranker = split_spec(spec)
    try:
        retriever = make_retriever(name, corpus, top_k=depth)
    except IndexMismatchError as e:  # an index of the model this name meant before a retrain
        print(f"{str(e).partition(' Rebuild it')[0]} Rebuilding it.", file=sys.stderr)
        get_index(corpus, spec_embedder(name), rebuild=True)
        retriever = make_retriever(name, corpus, top_k=depth)
    rr = None
    if reranker:
        from rag.chain import make_reranker

        path = reranker_path(reranker, corpus)
        if path is None or not path.exists():
            raise EmbedderNotFound("No trained ranker is published yet: run `distilrag retrain` first, "
                                   "or name a cross-encoder directory after '+'.")
        rr = make_reranker(str(path), top_n=depth)

    def retrieve(question: str):
        bundle = QueryBundle(question)
        nodes = retriever.retrieve(bundle)
        return rr.postprocess_nodes(nodes, query_bundle=bundle) if rr is not None else nodes

    return retrieve
