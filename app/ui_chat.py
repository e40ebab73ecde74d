"""The chat: per-session history, streamed answers, cited passages, compare mode, feedback.

A turn is one question with one result per retriever (two in compare mode), kept in
`st.session_state["turns"]` as plain dicts so every rerun redraws the history from it.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict

import streamlit as st

from app import services
from app.ui_sidebar import Settings, build_with_progress, start_llm
from app.ui_sources import answer_markdown, escape_md, render_sources

CURSOR = " ▌"


class NotReady(Exception):
    """The question cannot be answered yet (stale index, no documents); the message says why."""


def turns() -> list[dict]:
    return st.session_state.setdefault("turns", [])


def render_history() -> None:
    for turn in turns():
        with st.chat_message("user"):
            st.markdown(escape_md(turn["question"]))
        with st.chat_message("assistant"):
            _render_results(turn)


def _render_results(turn: dict) -> None:
    results = turn["results"]
    if len(results) == 1:
        render_result(turn, 0)
        return
    for i, col in enumerate(st.columns(len(results), gap="medium")):
        with col:
            st.markdown(f"#### {results[i]['label']}")
            render_result(turn, i)


def render_result(turn: dict, i: int) -> None:
    r = turn["results"][i]
    if r["error"]:
        st.error(r["error"])
        return
    st.markdown(answer_markdown(r["text"]) or "_(empty answer)_")
    t = r["timings"]
    st.caption(f"{r['retriever']} · retrieval {t.get('retrieve_s', 0):.2f} s · first token "
               f"{t.get('first_token_s', 0):.1f} s · total {t.get('total_s', 0):.1f} s")
    render_sources(r["sources"], r["cited"], r["text"], turn["question"])
    st.feedback("thumbs", key=f"fb-{turn['id']}-{i}", on_change=_on_feedback, args=(turn["id"], i))


def _on_feedback(turn_id: str, i: int) -> None:
    from app.feedback import log_feedback

    value = st.session_state.get(f"fb-{turn_id}-{i}")
    turn = next((t for t in turns() if t["id"] == turn_id), None)
    if turn is None or value is None:  # a cleared thumb is not a rating
        return
    r = turn["results"][i]
    rating = 1 if value == 1 else -1  # st.feedback("thumbs"): 0 = down, 1 = up
    log_feedback(turn["question"], r["text"], r["retriever"], [s["docid"] for s in r["sources"]],
                 rating, corpus=turn["corpus"])
    r["rating"] = rating
    st.toast("Thanks, feedback saved.")


def ask(question: str, settings: Settings) -> None:
    """Answer `question` live (streaming), then keep the turn in the session's history."""
    t_submit = time.perf_counter()
    retrievers = list(settings.compare) if settings.compare else [settings.retriever]
    turn = {"id": uuid.uuid4().hex[:12], "question": question, "corpus": settings.corpus,
            "results": [_empty_result(r) for r in retrievers]}
    with st.chat_message("user"):
        st.markdown(escape_md(question))
    with st.chat_message("assistant"):
        try:
            corpus = _corpus(settings)
            cfg = services.llm_config()
            llm = start_llm(cfg)
        except Exception as e:  # no corpus or no LLM: every result carries the message
            msg = str(e) if isinstance(e, NotReady) else services.explain(e)
            services.forget_llm()
            for r in turn["results"]:
                r["error"] = msg
            turns().append(turn)
            _render_results(turn)
            return
        llm_key = f"{cfg.endpoint}|{cfg.model_name}|{id(llm)}"  # a restarted server means a new client
        if len(retrievers) == 1:
            _answer_into(turn, 0, settings, corpus, llm, llm_key, t_submit)
        else:
            for i, col in enumerate(st.columns(len(retrievers), gap="medium")):
                with col:
                    st.markdown(f"#### {retrievers[i]}")
                    _answer_into(turn, i, settings, corpus, llm, llm_key, time.perf_counter())
    turns().append(turn)


def _empty_result(retriever: str) -> dict:
    return {"label": retriever, "retriever": retriever, "text": "", "sources": [], "cited": [],
            "timings": {}, "error": None, "rating": None}


def _corpus(settings: Settings):
    if settings.corpus == services.MY_DOCS:
        from app.uploads import list_documents

        if not list_documents():
            raise NotReady("Add documents first (upload files or import a folder above), then ask.")
    with st.spinner("Loading the corpus…"):
        return services.load_corpus(settings.corpus)


def _ensure_index(corpus, retriever: str) -> str:
    """The build stamp of the index `retriever` reads; builds a missing one with a progress bar."""
    emb = services.embedder_of(retriever)
    if emb is None:
        return ""
    state = services.index_state(corpus, emb)
    if state.status == "missing":
        build_with_progress(corpus, emb)
        state = services.index_state(corpus, emb)
    if state.status == "mismatch":
        raise NotReady(f"The {emb} index cannot be used: it was built for another embedder or "
                       f"corpus version. Rebuild it with the sidebar's 'Rebuild index' button. "
                       f"({state.message})")
    if not state.ready:
        raise NotReady(state.message)
    return state.built_at


def _answer_into(turn: dict, i: int, settings: Settings, corpus, llm, llm_key: str, t0: float) -> None:
    """Retrieve, stream the answer into the page, then draw it with its sources and feedback."""
    r = turn["results"][i]
    box = None
    try:
        stamp = _ensure_index(corpus, r["retriever"])
        with st.spinner(f"Retrieving with {r['retriever']}…"):
            chain = services.get_chain(corpus, r["retriever"], settings.top_k, settings.reranker,
                                       stamp, llm, llm_key)
            nodes = chain.retrieve(turn["question"])
        t_ret = time.perf_counter() - t0
        box = st.empty()
        box.caption("Waiting for the first token… (a local LLM on CPU needs a few seconds)")
        pieces: list[str] = []
        first: list[float] = []

        def on_token(tok: str) -> None:
            if not first:
                first.append(time.perf_counter() - t0)
            pieces.append(tok)
            box.markdown(answer_markdown("".join(pieces)) + CURSOR)
        ans = chain.answer(turn["question"], nodes=nodes, on_token=on_token)
    except Exception as e:
        if not isinstance(e, NotReady):
            services.forget_llm()  # a dead local server is restarted on the next question
        r["error"] = str(e) if isinstance(e, NotReady) else services.explain(e)
    else:
        total = time.perf_counter() - t0
        r.update(text=ans.text, retriever=ans.retriever or r["retriever"], cited=list(ans.cited),
                 sources=[asdict(s) for s in ans.sources],
                 timings={"retrieve_s": round(t_ret, 3), "first_token_s": round(first[0] if first else total, 3),
                          "total_s": round(total, 3)})
    if box is not None:
        box.empty()
    render_result(turn, i)
