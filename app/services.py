"""What the chat UI needs from the core, cached once per app process.

Corpora, index state (ready / missing / built with another embedder), the answering LLM and
chains, the published distilled model's card, the LLM endpoint's status, and the translation of
known errors into messages that say what to do. The UI modules draw; this module decides.
`make_llm` is the one place the app creates its LLM (tests replace it with a scripted fake).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app.preload import preload_modules
from rag.errors import public_endpoint, scrub  # noqa: F401  (the pages read them here)
from rag.messages import user_message

MY_DOCS = "my documents"
RETRIEVERS = ("base", "distilled", "bm25", "hybrid", "hybrid:distilled")
NEEDS_DISTILLED = ("distilled", "hybrid:distilled")
RETRIEVER_HELP = {
    "base": "dense: all-MiniLM-L6-v2 (cosine scores)",
    "distilled": "dense: MiniLM distilled from the LLM's rankings (cosine scores)",
    "bm25": "lexical: BM25 (BM25 scores)",
    "hybrid": "BM25 + base dense, reciprocal-rank fusion (RRF scores)",
    "hybrid:distilled": "BM25 + distilled dense, reciprocal-rank fusion (RRF scores)",
}


def default_corpus() -> str:
    return os.environ.get("DISTILRAG_CORPUS") or "squad_dev"


# ---------------------------------------------------------------- corpora
@st.cache_resource(show_spinner=False, max_entries=4)
def _load_corpus(spec: str, stamp: str):
    from rag.corpus import load_corpus
    from rag.settings import CORPORA_DIR

    if not (CORPORA_DIR / spec / "corpus.jsonl.gz").exists():
        preload_modules()  # a folder is read with LlamaIndex readers
    return load_corpus(spec)


def load_corpus(choice: str):
    """The corpus a sidebar choice names; "my documents" reloads whenever the uploads change."""
    if choice == MY_DOCS:
        from app.uploads import fingerprint, uploads_root

        root = uploads_root()
        return _load_corpus(str(root), fingerprint(root))
    return _load_corpus(choice, "")


# ---------------------------------------------------------------- retrievers and indexes
def corpus_spec(choice: str) -> str:
    """The corpus a sidebar choice names, as a name or path (published models are kept per corpus)."""
    if choice == MY_DOCS:
        from app.uploads import uploads_root

        return str(uploads_root())
    return choice


def published_distilled(choice: str) -> Path | None:
    from rag.embedder import published_path

    p = published_path("distilled", corpus_spec(choice))
    return p if p is not None and p.is_dir() else None


def refused_verdict(choice: str) -> str:
    """The verdict sentence of the corpus's last retrain when it refused its student and nothing
    distilled serves the corpus ("" otherwise)."""
    from rag.pipelines import published_verdict

    if published_distilled(choice):
        return ""
    refused = published_verdict(corpus_spec(choice)).get("refused")
    return refused if isinstance(refused, str) else ""


def published_ranker(choice: str) -> Path | None:
    from rag.embedder import published_path

    p = published_path("ranker", corpus_spec(choice))
    return p if p is not None and p.is_dir() else None


def available_retrievers(choice: str) -> list[str]:
    """The fixed choices (those that need a distilled model once it is published), and the
    weighted hybrid ("hybrid:distilled@0.3") the published verdict fitted, when it won."""
    best = best_pipeline(choice)
    fitted = [best[0]] if best and best[0] not in RETRIEVERS else []
    return [r for r in RETRIEVERS if r not in NEEDS_DISTILLED or published_distilled(choice)] + fitted


def retriever_help(retriever: str) -> str:
    if retriever in RETRIEVER_HELP:
        return RETRIEVER_HELP[retriever]
    from rag.retrievers import split_hybrid

    embedder, weight = split_hybrid(retriever)
    return (f"BM25 + {embedder} dense, score fusion weighted {weight:g} dense / {1 - weight:g} BM25 "
            "(the weight fitted on the held-out questions)")


def pipeline_scores(choice: str) -> tuple[dict[str, float], dict[str, float], str]:
    """From the corpus's published verdict (rag.pipelines.published_verdict: the distilled model's
    card, or a refused student's pipelines): {published spec: held-out nDCG@10}, {published spec: ms
    per question (retrieval and reranking, no LLM)} and who judged it; ({}, {}, "") when there is none."""
    from rag.pipelines import number_field, pipeline_rows

    rows, verdict = pipeline_rows(corpus_spec(choice))
    scores = number_field(rows, "ndcg@10")
    judge = {"gold": "gold labels", "llm": "the LLM's order"}.get(verdict.get("ranked_by"), "")
    return scores, number_field(rows, "ms_per_query"), (
        f"held-out nDCG@10 on {verdict.get('queries', '?')} questions, judged by {judge}" if scores else "")


def best_pipeline(choice: str) -> tuple[str, str | None] | None:
    """(retriever, reranker) of the best pipeline the corpus's published verdict measured, if any."""
    from rag.pipelines import best_spec

    from rag.retrievers import split_hybrid

    retriever, _, reranker = best_spec(corpus_spec(choice), fallback="").partition("+")
    weighted = (split_hybrid(retriever) or ("", None))[1] is not None
    return (retriever, reranker or None) if retriever in RETRIEVERS or weighted else None


def embedder_of(retriever: str) -> str | None:
    """The dense embedder whose index a retriever reads (None for BM25)."""
    from rag.retrievers import spec_embedder

    return spec_embedder(retriever)


def distilled_card(choice: str):
    """The published distilled model's rag.records.ModelCard; None when there is none."""
    from rag.pipelines import published_card

    return published_card(corpus_spec(choice))


def card_metrics(card) -> list[tuple[str, str, str]]:
    """(metric, base, distilled) dev rows of a ModelCard (ModelCard.read maps older layouts)."""
    dev = card.distill if card else {}
    base = dev.get("base_dev") if isinstance(dev.get("base_dev"), dict) else {}
    best = dev.get("best_dev") if isinstance(dev.get("best_dev"), dict) else {}

    def fmt(v) -> str:
        return f"{v:.3f}" if isinstance(v, (int, float)) else "–"
    return [(k, fmt(base.get(k)), fmt(v)) for k, v in sorted(best.items())]


@dataclass(frozen=True)
class IndexState:
    status: str          # "ready" | "missing" | "mismatch" | "error"
    message: str
    embedder: str
    built_at: str = ""
    n_passages: int = 0

    @property
    def ready(self) -> bool:
        return self.status == "ready"


def index_state(corpus, embedder: str) -> IndexState:
    """Is the index of (corpus, embedder) usable as it is? Reads the manifest only (a FAISS
    index's file or a Milvus collection's property: rag.index.stored_manifest)."""
    from rag.embedder import EmbedderNotFound, resolve_embedder
    from rag.index import IndexMismatchError, check_manifest, index_location, stored_manifest

    try:
        eid = resolve_embedder(embedder, corpus)
    except EmbedderNotFound as e:
        return IndexState("error", str(e), embedder)
    path = index_location(corpus, eid)
    try:
        m = stored_manifest(corpus, eid)
        if m is None:
            return IndexState("missing", f"No {embedder} index of {corpus.name} yet; it is built on the first "
                                         f"question ({len(corpus)} passages), or now with the button.", embedder)
        check_manifest(m, eid, corpus, path)
    except IndexMismatchError as e:
        return IndexState("mismatch", str(e), embedder)
    except (OSError, ValueError, TypeError) as e:
        return IndexState("mismatch", f"The index at {path} is unreadable ({e}); rebuild it.", embedder)
    return IndexState("ready", f"{m.n_passages} passages, built {m.built_at}", embedder,
                      m.built_at, m.n_passages)


def build_index(corpus, embedder: str, on_progress) -> None:
    """(Re)build the index; chains re-key on the manifest's build time, so none uses the old one."""
    preload_modules()
    from rag.index import build_index as _build

    _build(corpus, embedder, progress=False, on_progress=on_progress)


# ---------------------------------------------------------------- LLM
def llm_config():
    from rag.llm import LLMConfig

    return LLMConfig.from_env()


def make_llm(cfg):
    """The answering LLM for `cfg` (starts the embedded server when it is local)."""
    from rag.llm import llama_index_llm

    return llama_index_llm(cfg)


_LLM_LOCK = threading.Lock()  # one LLM start at a time, whether from a question or the warm-up
_LLMS: dict[tuple[str, str, str], object] = {}


_LLM_FAILURE: dict[str, str] = {}  # the last start failure's message, for the sidebar's "failed"


def get_llm(cfg, factory=None):
    """The answering LLM for `cfg`, made once per app process (and again if its server died)."""
    from rag.llm import running_server

    key = (cfg.endpoint, cfg.model, cfg.api_key_env)
    preload_modules()
    with _LLM_LOCK:
        llm = _LLMS.get(key)
        if llm is not None and cfg.is_local and running_server() is None:
            llm = None  # the local server we made a client for has gone: start a new one
        if llm is None:
            try:
                llm = _LLMS[key] = (factory or make_llm)(cfg)
            except Exception as e:
                _LLM_FAILURE["message"] = user_message(e) or scrub(f"{type(e).__name__}: {e}")
                raise
            _LLM_FAILURE.clear()
        return llm


def forget_llm(error: BaseException | None = None) -> None:
    """After an LLM error: the next question builds a fresh client (and restarts a dead server)."""
    with _LLM_LOCK:
        _LLMS.clear()
        if error is not None and llm_config().is_local:
            from rag.llm import LLMUnavailable

            if isinstance(error, LLMUnavailable):
                _LLM_FAILURE["message"] = user_message(error) or ""


def llm_failure() -> str:
    """Why the embedded LLM last failed to start ("" when it did not, or has started since)."""
    return _LLM_FAILURE.get("message", "")


def llm_needs_start(cfg) -> bool:
    from rag.llm import running_server

    return cfg.is_local and running_server() is None


def llm_status(cfg) -> tuple[str, str, str]:
    """(what, state, detail): state is "running", "idle", "failed" or "problem". Never includes a key."""
    if cfg.is_local:
        from rag.llm import running_server
        from rag.models import gguf_path

        what = f"local embedded llama.cpp · {cfg.model_name}"
        s = running_server()
        if s:
            return what, "running", f"serving on 127.0.0.1:{s.port}"
        if llm_failure():
            return what, "failed", (f"{llm_failure()} Fix what the log says, then ask again or press "
                                    "'Start the LLM now'; `distilrag llm start` shows the same in a terminal.")
        if os.environ.get("DISTILRAG_LLM_GGUF") or gguf_path().exists():
            return what, "idle", "not started: starts with the first question (about 10 s)"
        return what, "idle", ("model not fetched yet: the first question downloads and verifies it "
                              "(1.1 GB), or run `distilrag llm fetch`")
    key_set = bool(os.environ.get(cfg.api_key_env))
    what = f"{public_endpoint(cfg.endpoint)} · {cfg.model_name}"
    local = any(h in cfg.endpoint for h in ("127.0.0.1", "localhost"))
    if key_set or local:
        return what, "running", f"API key from ${cfg.api_key_env}: {'set' if key_set else 'not needed'}"
    return what, "problem", f"API key missing: set ${cfg.api_key_env} before launching the app"


# ---------------------------------------------------------------- chains
@st.cache_resource(show_spinner=False, max_entries=8)
def _cached_chain(corpus_key: str, retriever: str, top_k: int, reranker: str | None,
                  index_stamp: str, _corpus):
    from rag.chain import build_chain

    return build_chain(_corpus, retriever, top_k=top_k, reranker=reranker)


def get_chain(corpus, retriever: str, top_k: int, reranker: str | None, index_stamp: str):
    """The retrieval chain for these settings; it answers with the LLM each question passes it."""
    preload_modules()  # retrieval now runs before the LLM starts: the import lock must come first
    return _cached_chain(f"{corpus.name}:{corpus.hash}", retriever, top_k, reranker, index_stamp, corpus)


# ---------------------------------------------------------------- errors
def _log():
    import logging

    return logging.getLogger("distilrag.app")


def explain(e: BaseException) -> str:
    """Any error as one line for the page; unexpected ones go to the console with their traceback."""
    msg = user_message(e)
    if msg is None:
        import traceback

        _log().error("unexpected error in the app:\n%s", scrub("".join(traceback.format_exception(e))))
        msg = (f"Unexpected error ({type(e).__name__}): {scrub(str(e))[:300]}. "
               "The details are in the terminal that runs the app.")
    return msg
