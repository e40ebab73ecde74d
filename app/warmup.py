"""Warm-up: import the heavy libraries once, then start the LLM and load the retrievers' models
in background threads when a page is first shown, so the first question does not wait for them.
"""
from __future__ import annotations

import logging
import threading

from app.preload import preload_modules

_log = logging.getLogger("distilrag.app")

_WARMED: set[tuple] = set()


def warm_up(corpus_choice: str, retrievers: list[str], top_k: int) -> None:
    """Start the LLM and load the retrievers' models in the background once a page is shown, so
    the first question does not wait for them (measured: ~25 s to the first token without)."""
    key = (corpus_choice, tuple(sorted(retrievers)))
    if key in _WARMED:
        return
    _WARMED.add(key)
    from streamlit.runtime.scriptrunner import add_script_run_ctx

    from app import services

    factory = services.make_llm  # bound now: the thread must use the factory in force for this page
    for target, args in ((_warm_llm, (services.llm_config(), factory)),
                         (_warm_retrievers, (corpus_choice, list(retrievers), top_k))):
        t = threading.Thread(target=target, args=args, daemon=True, name=f"distilrag-{target.__name__}")
        add_script_run_ctx(t)  # lets the thread use Streamlit's caches without warnings
        t.start()


def _warm_llm(cfg, factory) -> None:
    from app import services

    try:
        preload_modules()
        services.get_llm(cfg, factory)
    except Exception as e:  # the question that follows reports it properly
        _log.info("LLM warm-up failed: %s", services.scrub(str(e)))


def _warm_retrievers(corpus_choice: str, retrievers: list[str], top_k: int) -> None:
    from app import services

    try:
        preload_modules()
        from rag.embedder import load_sentence_transformer, resolve_embedder
        from rag.retrievers import bm25_retriever

        corpus = services.load_corpus(corpus_choice)
        for r in retrievers:
            emb = services.embedder_of(r)
            # A missing index is built with a progress bar on the first question, not silently here.
            if emb and services.index_state(corpus, emb).ready:
                load_sentence_transformer(resolve_embedder(emb, corpus).path)
            if r == "bm25" or r.startswith("hybrid"):  # hybrid:distilled too
                bm25_retriever(corpus, top_k)
    except Exception as e:
        _log.info("retriever warm-up failed: %s", e)
