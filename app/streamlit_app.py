"""The distilrag chat UI (Streamlit): cited, streamed answers over the shipped corpus or your files.

    distilrag app [--port 8501] [--corpus squad_dev]
    streamlit run app/streamlit_app.py          (corpus from $DISTILRAG_CORPUS, default squad_dev)

Sidebar: documents, retriever (base / distilled / BM25 / hybrid), top-k, reranker, compare mode,
index status, LLM endpoint. Main area: your documents (when chosen) and the chat. The work is
done by the shared chain in rag/, the same one the CLI and the evaluation harness use.
"""
from __future__ import annotations

import sys
from pathlib import Path

try:
    import app  # noqa: F401
except ImportError:  # `streamlit run` puts app/ itself on sys.path; an uninstalled checkout needs its root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st


def main() -> None:
    st.set_page_config(page_title="distilrag", page_icon="🔎", layout="wide")
    from rag.settings import apply_offline_env

    apply_offline_env()
    from app import services, ui_chat, ui_docs, ui_sidebar, warmup
    from app.ui_sources import CITATION_CSS

    st.html(CITATION_CSS)

    ui_chat.restore_session()  # the URL's conversation and the saved settings, before any widget
    settings, llm_slot = ui_sidebar.render()
    st.title("Ask your documents")
    where = "your documents" if settings.corpus == services.MY_DOCS else f"the {settings.corpus} corpus"
    mode = (f"comparing {settings.compare[0]} and {settings.compare[1]}" if settings.compare
            else f"retriever {settings.retriever}")
    st.caption(f"Answers come only from {where} ({mode}, top-{settings.top_k}"
               f"{', reranked' if settings.reranker else ''}); each cites its passages as [n].")
    warmup.warm_up(settings.corpus, list(settings.compare or (settings.retriever,)), settings.top_k)
    if settings.corpus == services.MY_DOCS:
        ui_docs.render(list(settings.compare or (settings.retriever,)))
    ui_chat.render_history()
    if not ui_chat.turns():
        st.caption("Try: *Where did Super Bowl 50 take place?*"
                   if settings.corpus == "squad_dev" else "Ask a question to begin.")
    question = st.chat_input("Ask a question", key="question")
    if question and question.strip():
        ui_chat.ask(question.strip(), settings)
    ui_sidebar.llm_status(llm_slot)
    from app.conversations import SETTING_KEYS, save_settings

    save_settings({k: st.session_state[k] for k in SETTING_KEYS if k in st.session_state})


main()
