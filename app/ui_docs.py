"""The "my documents" panel: upload files or import a folder, see what is stored, index it.

Validation and storage live in app.uploads; this draws the controls and the report (every
rejected file by name with its reason) and indexes the stored documents with a progress bar.
"""
from __future__ import annotations

import streamlit as st

from app import services, uploads
from app.ui_sidebar import build_with_progress
from app.ui_sources import escape_md

UPLOAD_TYPES = ["txt", "md", "markdown", "pdf", "html", "htm"]


def render(retrievers: list[str]) -> None:
    docs = uploads.list_documents()
    with st.expander(f"Your documents ({len(docs)} stored)", expanded=not docs):
        if not docs:
            st.markdown("Add files or a folder and the chat answers from them alone: each file is checked "
                        "(type, size, text), split into passages and indexed on this machine; nothing leaves "
                        "it. A file that cannot be used is named with the reason, the rest are kept.")
        files = st.file_uploader("Upload .txt, .md, .pdf or .html files (50 MB each at most)",
                                 type=UPLOAD_TYPES, accept_multiple_files=True, key="uploader")
        folder = st.text_input("…or import a folder on this machine", key="folder_path",
                               placeholder="/path/to/your/notes")
        c1, c2 = st.columns(2)
        if c1.button("Add uploaded files", key="add_uploads", disabled=not files, width="stretch"):
            with st.spinner("Checking and storing the files…"):
                report = uploads.store_uploads([(f.name, f.getvalue()) for f in files])
            _after_store(report, retrievers)
        if c2.button("Import folder", key="import_folder", disabled=not folder, width="stretch"):
            with st.spinner("Checking and copying the folder's documents…"):
                report = uploads.import_folder(folder)
            _after_store(report, retrievers)
        if st.session_state.get("docs_report"):
            _show_report(st.session_state["docs_report"])
        docs = uploads.list_documents()
        if docs:
            st.caption("Stored: " + ", ".join(f"`{p.name}` ({p.stat().st_size / 1024:.0f} KB)" for p in docs))
            gone = st.multiselect("Remove documents", [p.name for p in docs], key="remove_docs")
            if gone and st.button("Remove selected", key="remove_btn"):
                for name in gone:
                    uploads.remove_document(name)
                st.session_state["docs_report"] = {"stored": [], "unchanged": [], "rejected": [],
                                                   "skipped": [], "removed": list(gone)}
                st.rerun()


def _after_store(report: uploads.StoreReport, retrievers: list[str]) -> None:
    """Keep the report for the page, then index what is stored (bad files never reach the index)."""
    shown = {"stored": report.stored, "unchanged": report.unchanged,
             "rejected": [list(x) for x in report.rejected], "skipped": [], "removed": []}
    if uploads.list_documents():
        try:
            corpus = services.load_corpus(services.MY_DOCS)
            if corpus.skipped:  # passed the checks but yields no text (e.g. a scanned PDF): drop it
                shown["skipped"] = [list(x) for x in corpus.skipped]
                for name, _ in corpus.skipped:
                    uploads.remove_document(name)
                shown["stored"] = [n for n in report.stored if n not in {x for x, _ in corpus.skipped}]
                corpus = services.load_corpus(services.MY_DOCS)
            shown["indexed"] = len(corpus)
            for emb in sorted({e for r in retrievers if (e := services.embedder_of(r))}):
                if services.index_state(corpus, emb).status != "ready":
                    build_with_progress(corpus, emb)
        except Exception as e:  # e.g. every stored file unreadable: say so, keep the page
            shown["error"] = services.explain(e)
    st.session_state["docs_report"] = shown
    st.rerun()  # the counts above (and the sidebar's index status) show the new documents at once


def _show_report(rep: dict) -> None:
    if rep.get("stored"):
        st.success(f"Added {len(rep['stored'])} file(s): " + ", ".join(f"`{n}`" for n in rep["stored"]))
    if rep.get("unchanged"):
        st.info("Already stored (unchanged): " + ", ".join(f"`{n}`" for n in rep["unchanged"]))
    if rep.get("removed"):
        st.info("Removed: " + ", ".join(f"`{n}`" for n in rep["removed"]))
    bad = rep.get("rejected", []) + rep.get("skipped", [])
    if bad:
        st.warning("Not added:\n" + "\n".join(f"- **{escape_md(n)}**: {escape_md(why)}" for n, why in bad))
    if rep.get("error"):
        st.error(rep["error"])
    elif "indexed" in rep:
        st.caption(f"{rep['indexed']} passages from your documents are indexed and ready to ask about.")
