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
from app.ui_sidebar import Settings, build_with_progress, open_chat, start_llm
from app.ui_sources import answer_markdown, escape_md, render_sources

CURSOR = " ▌"


class NotReady(Exception):
    """The question cannot be answered yet (stale index, no documents); the message says why."""


def turns() -> list[dict]:
    return st.session_state.setdefault("turns", [])


def restore_session() -> None:
    """A new browser session reopens the conversation its URL names (?chat=<id>), or starts one,
    and takes the sidebar's last saved settings; run before any widget is drawn."""
    from app import conversations

    if "chat_id" in st.session_state:
        return
    cid = st.query_params.get("chat")
    if conversations.valid_id(cid) and conversations.load_chat_record(cid):
        st.session_state["turns"] = conversations.load_turns(cid)
    else:
        cid = conversations.new_chat_id()
    open_chat(cid, st.session_state.get("turns", []))
    for k, v in conversations.load_settings().items():
        st.session_state.setdefault(k, v)


def save() -> None:
    from app import conversations

    conversations.save_chat(st.session_state.get("chat_id", ""), turns())


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
    _render_answer(turn, i)
    if r["sources"] or not r["error"]:
        render_sources(r["sources"], r["cited"], r["text"], turn["question"], anchor(turn, i))


def anchor(turn: dict, i: int) -> str:
    """The id prefix of result `i`'s passages: its [n] links point at `<prefix>-n`."""
    return f"src-{turn['id']}-{i}"


def _render_answer(turn: dict, i: int) -> None:
    r = turn["results"][i]
    if r["error"]:
        st.error(r["error"])
        return
    if r.get("partial"):  # the run ended before the answer did: the Stop button, or a rerun
        if r["text"]:
            st.markdown(answer_markdown(r["text"], anchor(turn, i), len(r["sources"])), unsafe_allow_html=True)
        st.caption("Stopped" + (": the answer is cut here." if r["text"] else " before the answer began."),
                   help="Ask again to get the whole answer.")
        return
    st.markdown(answer_markdown(r["text"], anchor(turn, i), len(r["sources"])) or "_(empty answer)_",
                unsafe_allow_html=True)
    if r.get("withheld"):  # what the model said, shown as what it is: not found in the passages
        st.warning(f"Withheld: the model answered \u201c{r['withheld']}\u201d, but most of its words are in "
                   "none of the passages below. Check them before relying on it.", icon=":material/warning:")
    if r.get("repaired_from"):  # say so: the reader may look for what the model first cited
        st.caption(f"The model cited {r['repaired_from']}; the citation points to the passage that holds "
                   "this answer's words.")
    if r.get("unsupported"):  # the answer's words are not all in what it cites: do not present it as fact
        st.warning(f"Unsupported: {r['unsupported']}. Check the passages below before relying on this answer.",
                   icon=":material/warning:")
    t = r["timings"]
    st.caption(f"{r['retriever']} · retrieval {t.get('retrieve_s', 0):.2f} s · first token "
               f"{t.get('first_token_s', 0):.1f} s · total {t.get('total_s', 0):.1f} s")
    with st.expander("Copy answer", icon=":material/content_copy:"):
        st.code(r["text"], language=None, wrap_lines=True)  # the code block's own copy button
    st.feedback("thumbs", key=f"fb-{turn['id']}-{i}", on_change=_on_feedback, args=(turn["id"], i))
    if r.get("rating") == -1:
        st.text_input("What was wrong? (optional, goes to the feedback log)", key=f"why-{turn['id']}-{i}",
                      on_change=_on_reason, args=(turn["id"], i))


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
    save()
    st.toast("Thanks, feedback saved.")


def _on_reason(turn_id: str, i: int) -> None:
    """A thumbs-down's reason: one more line in the feedback log (the last line wins)."""
    from app.feedback import log_feedback

    reason = (st.session_state.get(f"why-{turn_id}-{i}") or "").strip()
    turn = next((t for t in turns() if t["id"] == turn_id), None)
    if turn is None or not reason:
        return
    r = turn["results"][i]
    log_feedback(turn["question"], r["text"], r["retriever"], [s["docid"] for s in r["sources"]],
                 -1, corpus=turn["corpus"], reason=reason)
    r["reason"] = reason
    save()
    st.toast("Thanks, the reason is saved with your rating.")


def ask(question: str, settings: Settings) -> None:
    """Answer `question` live, then keep the turn in the session's history.

    Every retriever retrieves first and its passages are drawn at once, before the LLM is started
    or asked; an LLM that cannot start leaves the passages on the page with the reason beside them.
    """
    retrievers = list(settings.compare) if settings.compare else [settings.retriever]
    turn = {"id": uuid.uuid4().hex[:12], "question": question, "corpus": settings.corpus,
            "results": [_empty_result(r) for r in retrievers]}
    with st.chat_message("user"):
        st.markdown(escape_md(question))
    with st.chat_message("assistant"):
        try:
            corpus = _corpus(settings)
        except Exception as e:  # no corpus: every result carries the message
            msg = str(e) if isinstance(e, NotReady) else services.explain(e)
            for r in turn["results"]:
                r["error"] = msg
            turns().append(turn)
            save()
            _render_results(turn)
            return
        # The Stop button's place, above the answers: below them it would move with every token.
        stop = st.empty()
        cols = st.columns(len(retrievers), gap="medium") if len(retrievers) > 1 else [st.container()]
        slots, live = [], []
        for i, col in enumerate(cols):
            with col:
                if len(retrievers) > 1:
                    st.markdown(f"#### {retrievers[i]}")
                slots.append((st.empty(), st.empty()))  # (answer, sources)
        for i in range(len(retrievers)):  # sources first, for every side
            live.append(_retrieve_into(turn, i, settings, corpus, slots[i][1]))
        for i in range(1, len(retrievers)):  # said now: starting the LLM can take a while
            if live[i] is not None:
                slots[i][0].caption(f"Waiting for the {retrievers[0]} answer to finish…")
        try:
            cfg = services.llm_config()
            with cols[0]:
                llm = start_llm(cfg)
        except Exception as e:  # the LLM cannot start: keep the passages, say why and what to do
            services.forget_llm(e)
            for r in turn["results"]:
                r["error"] = r["error"] or (services.explain(e) + " The retrieved passages are below.")
            turns().append(turn)
            save()
            for i, (answer_slot, _) in enumerate(slots):
                with answer_slot.container():
                    _render_answer(turn, i)
            return
        for i, (answer_slot, _) in enumerate(slots):
            if live[i] is not None:
                turn["results"][i]["partial"] = True  # until its answer is complete
        turns().append(turn)  # kept from here on: a reload mid-answer keeps the question and sources
        save()
        # Clicking it reruns the script, which ends this run at its next token; the chain then
        # closes the LLM stream, and the server stops generating (see rag.chain.RAGChain.answer).
        stop.button("Stop", key=f"stop-{turn['id']}", icon=":material/stop_circle:", on_click=save,
                    help="End the answer here (the text so far is kept)")
        for i, (answer_slot, sources_slot) in enumerate(slots):
            if live[i] is not None:
                _answer_into(turn, i, live[i], llm, answer_slot, sources_slot)
                save()
            with answer_slot.container():
                _render_answer(turn, i)
        stop.empty()
    save()


def _retrieve_into(turn: dict, i: int, settings: Settings, corpus, sources_slot):
    """Retrieve for result `i` and draw its passages; (chain, nodes) to answer from, or None."""
    r = turn["results"][i]
    try:
        stamp = _ensure_index(corpus, r["retriever"])
        with st.spinner(f"Retrieving with {r['retriever']}…"):
            chain = services.get_chain(corpus, r["retriever"], settings.top_k, settings.reranker, stamp)
            t1 = time.perf_counter()
            nodes = chain.retrieve(turn["question"])
    except Exception as e:
        r["error"] = str(e) if isinstance(e, NotReady) else services.explain(e)
        return None
    from rag.chain import sources_of

    r["sources"] = [asdict(s) for s in sources_of(nodes)]
    r["timings"]["retrieve_s"] = round(time.perf_counter() - t1, 3)
    with sources_slot.container():
        render_sources(r["sources"], [], "", turn["question"])
    return chain, nodes


def _answer_into(turn: dict, i: int, live, llm, answer_slot, sources_slot) -> None:
    """Stream the answer into `answer_slot`, then redraw the passages with the cited ones marked."""
    chain, nodes = live
    r = turn["results"][i]
    t0 = time.perf_counter()
    answer_slot.caption("Waiting for the first token… (a local LLM on CPU needs a few seconds)")
    pieces: list[str] = []
    first: list[float] = []

    def on_token(tok: str) -> None:
        if not first:
            first.append(time.perf_counter() - t0)
        pieces.append(tok)
        r["text"] = "".join(pieces)  # what a Stop keeps
        answer_slot.markdown(answer_markdown(r["text"]) + CURSOR, unsafe_allow_html=True)
    try:
        ans = chain.answer(turn["question"], nodes=nodes, on_token=on_token, llm=llm)
    except Exception as e:
        services.forget_llm(e)  # a dead local server is restarted on the next question
        r["error"] = services.explain(e) + " The retrieved passages are below."
        r["partial"] = False
        return
    total = time.perf_counter() - t0
    r.update(text=ans.text, partial=False, retriever=ans.retriever or r["retriever"], cited=list(ans.cited),
             sources=[asdict(s) for s in ans.sources],
             timings={**r["timings"], "first_token_s": round(first[0] if first else total, 3),
                      "total_s": round(total, 3)})
    from rag.grounding import support

    check = support(ans.text, [s.text for s in ans.sources if s.n in ans.cited], turn["question"])
    r["unsupported"] = check.reason if check.supported is False else ""
    if ans.withheld:
        r["withheld"] = ans.model_text
    if ans.citation_repaired:
        from rag.citations import parse_citations

        r["repaired_from"] = ", ".join(f"[{n}]" for n in parse_citations(ans.model_text, len(ans.sources)))
    with sources_slot.container():
        render_sources(r["sources"], r["cited"], r["text"], turn["question"], anchor(turn, i))


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
