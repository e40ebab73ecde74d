"""Cited passages: title, doc id, score, the passage text with the answer's sentence highlighted.

The answer-bearing sentence is the passage sentence sharing the most answer words that the
question does not already contain (answers restate the question; the new words are the answer).
Passage text is escaped before rendering: uploaded documents may hold HTML or Markdown.
"""
from __future__ import annotations

import html
import re

import streamlit as st

from rag.citations import replace_citations, strip_citations

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|$~:])")
_STOP = frozenset("""a an and are as at be been by did do does for from had has have he her his in
is it its of on or she that the their there they this to was were what when where which who whom
whose why how with source sources answer i know based provided documents""".split())


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()] or [text]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def answer_sentence(passage: str, answer: str, question: str = "") -> int | None:
    """Index of the passage sentence that most likely holds the answer, or None when none does."""
    from rag.chain import is_no_answer

    if not answer.strip() or is_no_answer(answer):
        return None
    q = _words(question)
    a = _words(strip_citations(answer))
    new = a - q
    best, best_score = None, 0.0
    for i, sentence in enumerate(split_sentences(passage)):
        s = _words(sentence)
        score = 2.0 * len(new & s) + 0.25 * len((a & q) & s)
        if score > best_score:
            best, best_score = i, score
    return best if best_score >= 2.0 else None  # at least one answer word beyond the question


def escape_md(text: str) -> str:
    """Plain text safe inside st.markdown (no HTML, no LaTeX from "$", no Markdown syntax)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def escape_label(text: str) -> str:
    """Widget labels render Markdown but not HTML: escape only the Markdown."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def passage_markdown(passage: str, highlight: int | None) -> str:
    parts = split_sentences(passage)
    out = [f"<mark>{escape_md(s)}</mark>" if i == highlight else escape_md(s) for i, s in enumerate(parts)]
    return " ".join(out)


def answer_markdown(text: str, anchor: str = "", n_sources: int = 0) -> str:
    """The LLM's answer as Markdown: its formatting kept, HTML escaped (passages can carry text
    that the model repeats), "$" kept from starting LaTeX, and each in-range [n] a link to its
    passage (`anchor`-n, see render_sources); rendered with unsafe_allow_html for those links."""
    text = html.escape(text, quote=False).replace("$", r"\$")
    if not anchor:
        return text

    def link(nums: list[int], original: str) -> str:
        if not all(1 <= n <= n_sources for n in nums):
            return original
        return ", ".join(f'<a href="#{anchor}-{n}" class="distilrag-cite">[{n}]</a>' for n in nums)
    return replace_citations(text, link)


# Styles the page once: a passage that an [n] link was followed to is outlined (CSS :target).
CITATION_CSS = """<style>
.distilrag-src:target { outline: 2px solid #f0b400; background: rgba(255, 214, 0, .12); border-radius: 4px; }
a.distilrag-cite { text-decoration: none; font-weight: 600; }
</style>"""


def render_sources(sources: list[dict], cited: list[int], answer: str, question: str,
                   anchor: str = "") -> None:
    """One expander per retrieved passage; the cited ones marked and open, so every [n] link of
    the answer lands on a visible passage (its id is `anchor`-n) with the answer's sentence marked."""
    if not sources:
        st.caption("No passage was retrieved.")
        return
    for s in sources:
        is_cited = s["n"] in cited
        label = (f"\\[{s['n']}\\] {escape_label(s['title'] or s['docid'])} · `{s['docid']}` · "
                 f"score {s['score']:.3f}" + (" · **cited**" if is_cited else ""))
        with st.expander(label, expanded=is_cited, icon=":material/format_quote:" if is_cited else None):
            hl = answer_sentence(s["text"], answer, question) if is_cited else None
            body = passage_markdown(s["text"], hl)
            if anchor:
                body = f'<div id="{anchor}-{s["n"]}" class="distilrag-src">{body}</div>'
            st.markdown(body, unsafe_allow_html=True)
            st.caption(f"doc id {escape_md(s['docid'])} · retrieval score {s['score']:.4f}"
                       + (" · cited in the answer" if is_cited else ""))
