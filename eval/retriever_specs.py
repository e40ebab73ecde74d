"""Retriever specs now live in rag.pipelines (one resolver for chain, harness and trainer); these
names stay importable from here while callers move over."""
from rag.pipelines import reranker_path, slug, split_spec  # noqa: F401
from rag.pipelines import spec_identity as retriever_identity  # noqa: F401


def build_retrieval(spec: str, corpus, depth: int):
    from rag.pipelines import retrieval_function

    return retrieval_function(spec, corpus, depth)
