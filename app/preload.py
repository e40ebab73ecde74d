"""The heavy libraries imported once per app process, one thread at a time.

Two threads importing parts of the `llama_index` namespace package at once can fail with
"cannot import name 'core' from 'llama_index'" or a KeyError (seen when the warm-up ran beside a
question), so the warm-up threads and every UI path that reaches LlamaIndex come through here first.
"""
from __future__ import annotations

import threading

_IMPORT_LOCK = threading.Lock()
_imported = False


def preload_modules() -> None:
    """Import the heavy libraries once (see the module docstring for why under a lock)."""
    global _imported
    if _imported:
        return
    import importlib

    with _IMPORT_LOCK:
        if _imported:
            return
        for name in ("llama_index.core", "llama_index.core.instrumentation", "llama_index.llms.openai_like",
                     "llama_index.vector_stores.faiss", "llama_index.retrievers.bm25",
                     "sentence_transformers", "rag.chain", "rag.pipelines", "rag.retrievers", "rag.index"):
            try:
                importlib.import_module(name)
            except ImportError:  # the code that needs it raises with its install hint
                pass
        _imported = True
