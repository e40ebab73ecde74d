"""The sidebar: documents, retriever (with the distilled model's card), top-k, reranker, compare
mode, index status with rebuild, the LLM endpoint and its status, feedback log, clear chat."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import services


@dataclass(frozen=True)
class Settings:
    corpus: str                  # a corpus name/path or services.MY_DOCS
    retriever: str
    top_k: int
    reranker: str | None         # "ranker" (the published cross-encoder) or None
    compare: tuple[str, str] | None  # the two retrievers answering side by side, or None


def render():
    """Draw the sidebar; returns the settings and the slot for the LLM status, which the app fills
    last so that it shows the state after this run's question (the first one starts the LLM)."""
    with st.sidebar:
        st.header("distilrag")
        from rag.corpus import shipped_corpora

        default = services.default_corpus()
        # A folder or JSONL named by --corpus is shown by its name, not as a path that fills the sidebar.
        label = f"{default} (shipped)" if default in shipped_corpora() else Path(default).name
        corpus = st.radio("Documents", [default, services.MY_DOCS], key="corpus_choice",
                          format_func=lambda c: label if c == default else "my documents",
                          help=f"Ask about {default}, or about files you add.")
        retriever, reranker, top_k = _retrieval_controls(corpus)
        compare = _compare_controls(corpus, retriever)
        _index_status(corpus, {retriever, *(compare or ())})
        llm_slot = st.container()
        st.divider()
        from app.feedback import feedback_path, summary

        st.caption(f"Feedback: {summary()} in `{feedback_path().name}` under the app data dir.")
        _conversations()
    return Settings(corpus, retriever, top_k, reranker, compare), llm_slot


def open_chat(chat_id: str, chat_turns: list[dict]) -> None:
    """Make `chat_id` this session's conversation (its URL names it: ?chat=<id>)."""
    st.session_state["chat_id"] = chat_id
    st.session_state["turns"] = chat_turns
    st.query_params["chat"] = chat_id


def _conversations() -> None:
    """New chat, and the saved conversations to reopen (each is also its own URL: ?chat=<id>)."""
    from app import conversations

    if st.button("New chat", key="clear_chat", width="stretch", icon=":material/add:"):
        open_chat(conversations.new_chat_id(), [])
    chats = [c for c in conversations.list_chats() if c["id"] != st.session_state.get("chat_id")]
    if chats:
        with st.expander(f"Conversations ({len(chats)})"):
            for c in chats:
                if st.button(f"{c['title'] or '(untitled)'} · {c['n']} · {c['updated'][:16]}", key=f"chat-{c['id']}",
                             width="stretch"):
                    open_chat(c["id"], conversations.load_turns(c["id"]))
                    st.rerun()


def _retrieval_controls(corpus: str) -> tuple[str, str | None, int]:
    options = services.available_retrievers(corpus)
    if st.session_state.get("retriever") not in (None, *options):
        del st.session_state["retriever"]  # a saved choice this corpus does not offer (yet)
    scores, latency, judged = services.pipeline_scores(corpus)
    best = services.best_pipeline(corpus)
    if best and st.session_state.get("retriever") not in options:
        st.session_state["retriever"] = best[0]  # the measured best pipeline is the default
        st.session_state["rerank"] = best[1] == "ranker"

    def caption(r: str) -> str:
        score, ms = scores.get(r), latency.get(r)
        return services.retriever_help(r) + (f" · nDCG@10 {score:.3f}" if score is not None else "") + (
            f" · {ms:.0f} ms" if ms is not None else "") + (" · best measured" if best and best == (r, None) else "")
    retriever = st.radio("Retriever", options, key="retriever", captions=[caption(r) for r in options],
                         help=f"Figures: {judged}, from the corpus's last published verdict (ms: retrieval and "
                              "reranking per question on the machine that trained it, without the LLM)."
                         if judged else None)
    if "distilled" in options:
        card = services.distilled_card(corpus)
        with st.expander("Distilled model", expanded=retriever == "distilled"):
            st.markdown(f"**{card.name if card else 'distilled'}**  \ncreated {(card.created if card else '') or 'unknown'}")
            rows = services.card_metrics(card)
            if rows:
                st.table({"metric": [r[0] for r in rows], "base": [r[1] for r in rows],
                          "distilled": [r[2] for r in rows]})
            else:
                st.caption("Its card records no metrics.")
    else:
        _retrain_progress(corpus)
    top_k = st.slider("Passages (top-k)", 1, 20, 5, key="top_k")
    reranker = None
    if services.published_ranker(corpus):
        if st.checkbox("Rerank with the trained cross-encoder", key="rerank",
                       help="Retrieves 20 candidates, the ranker keeps the best top-k."):
            reranker = "ranker"
        if (reranked := scores.get(f"{retriever}+ranker")) is not None:
            ms = latency.get(f"{retriever}+ranker")
            st.caption(f"{retriever} + ranker: nDCG@10 {reranked:.3f}" + (f" · {ms:.0f} ms" if ms is not None else "")
                       + (" · best measured" if best == (retriever, "ranker") else ""))
    else:
        st.caption("Reranker: none trained yet (the retrain pipeline publishes one).")
    return retriever, reranker, top_k


def _retrain_progress(corpus: str) -> None:
    """No distilled model yet: the background retrain's stage and progress, refreshed every few
    seconds; the page reruns (and offers the new retriever, ranker and compare) once it is published."""
    from app import retrain_job

    if refused := services.refused_verdict(corpus):
        best = services.best_pipeline(corpus)
        served = f" The corpus is served by the best pipeline without it: {'+'.join(p for p in best if p)}." if best else ""
        st.caption(f"Distilled retriever: the last retrain did not publish it. {refused}{served}")
        return
    if corpus == services.MY_DOCS or retrain_job.status(corpus).state == "none":
        st.caption("No distilled retriever for these documents yet: train one with "
                   "`distilrag retrain --corpus <folder> --queries <questions file>`.")
        return

    @st.fragment(run_every=5)
    def progress() -> None:
        if services.published_distilled(corpus):  # published now: redraw the page with it
            st.rerun(scope="app")
        stat = retrain_job.status(corpus)
        if stat.state == "done":  # finished without publishing here (the verdict refused, another home)
            st.caption(f"Distilled retriever: the background retrain finished but published nothing for "
                       f"this data dir; its last lines are in `{retrain_job.log_path(corpus)}`.")
            return
        shown = {"running": st.info, "refused": st.info, "failed": st.error}.get(stat.state, st.caption)
        shown(f"Distilled retriever: background retrain {stat.summary}. "
              f"Log: `{retrain_job.log_path(corpus)}`")
        if stat.state == "running":
            st.progress(min(stat.done_stages / len(retrain_job.STAGES), 1.0))
    progress()


def _compare_controls(corpus: str, retriever: str) -> tuple[str, str] | None:
    if not st.toggle("Compare base vs distilled", key="compare",
                     help="Answer each question twice, side by side, with two retrievers."):
        return None
    options = services.available_retrievers(corpus)
    if "distilled" not in options:
        st.warning("No distilled retriever exists yet, so base cannot be compared with it. "
                   "It is trained in the background on the first run of the shipped corpus, or with "
                   "`distilrag retrain --corpus <corpus>`; meanwhile you can compare base with another "
                   "retriever.")
    left = _select("Left", options, "base", "compare_left")
    right_options = [r for r in options if r != left]
    right = _select("Right", right_options, "distilled" if "distilled" in right_options else right_options[0],
                    "compare_right")
    return left, right


def _select(label: str, options: list[str], default: str, key: str) -> str:
    """A selectbox whose value survives reloads (saved settings) but never names a missing option."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default
    return st.selectbox(label, options, key=key)


def _index_status(corpus_choice: str, retrievers: set[str]) -> None:
    embedders = sorted({e for r in retrievers if (e := services.embedder_of(r))})
    if not embedders:
        return
    if corpus_choice == services.MY_DOCS:
        from app.uploads import list_documents

        if not list_documents():
            st.caption("Index: built as soon as you add documents.")
            return
    try:
        corpus = services.load_corpus(corpus_choice)
    except Exception as e:  # an unreadable corpus: the main area explains
        msg = services.user_message(e)
        st.caption(f"Index: {msg or 'corpus unavailable'}")
        return
    for emb in embedders:
        state = services.index_state(corpus, emb)
        if state.status == "ready":
            st.caption(f"✅ {emb} index: {state.message}")
            continue
        if state.status == "mismatch":
            st.error(f"The {emb} index must be rebuilt before it can be used. {state.message}")
        elif state.status == "missing":
            st.info(state.message)
        else:
            st.warning(state.message)
            continue
        label = "Rebuild index" if state.status == "mismatch" else "Build index now"
        if st.button(f"{label} ({emb})", key=f"build-{emb}", width="stretch"):
            try:
                build_with_progress(corpus, emb)
            except Exception as e:
                st.error(services.explain(e))
            else:
                st.rerun()


def build_with_progress(corpus, embedder: str) -> None:
    """Build an index with a progress bar (the script thread does the work; the page stays live)."""
    bar = st.progress(0.0, text=f"Indexing {len(corpus)} passages of {corpus.name} with {embedder}…")

    def on_progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Indexing with {embedder}: {done}/{total} passages")
    services.build_index(corpus, embedder, on_progress)
    bar.progress(1.0, text=f"{embedder} index of {corpus.name} built.")


def llm_status(slot) -> None:
    with slot:
        _llm_status()


def _llm_status() -> None:
    cfg = services.llm_config()
    what, state, detail = services.llm_status(cfg)
    dot = {"running": ":green[●]", "idle": ":gray[●]", "failed": ":red[●]", "problem": ":red[●]"}[state]  # renders without emoji fonts
    st.markdown(f"**LLM** {dot} {state}  \n{what}")
    st.caption(detail)
    if cfg.is_local and state in ("idle", "failed") and st.button("Start the LLM now", key="start_llm", width="stretch"):
        try:
            start_llm(cfg)
        except Exception as e:  # shown as a message, never as a traceback
            st.error(services.explain(e))
        else:
            st.rerun()


def start_llm(cfg):
    """Start (or reuse) the answering LLM behind a spinner; errors become messages."""
    if not services.llm_needs_start(cfg):
        text = "Connecting to the LLM…"
    elif "not fetched" in services.llm_status(cfg)[2]:
        text = "Fetching and verifying the local LLM (1.1 GB, once; see the terminal for progress)…"
    else:
        text = "Starting the local LLM (about 10 s, once while the app runs)…"
    with st.spinner(text):
        return services.get_llm(cfg)
