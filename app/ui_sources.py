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
    """Index of the passage sentence that most likely holds the answer, or None when none does.

    The answer's words beyond the question count less the later they come (a short RAG answer
    states its fact first and elaborates after: "at Levi's Stadium in the San Francisco Bay Area"),
    and names and numbers count three times (they carry a factoid's fact; "took" does not), so the
    sentence with "Levi's Stadium" beats one that only shares the elaboration."""
    from rag.prompts import is_no_answer

    if not answer.strip() or is_no_answer(answer):
        return None
    q = _words(question)
    tokens = re.findall(r"[A-Za-z0-9]+", strip_citations(answer))
    named = {t.lower() for i, t in enumerate(tokens) if t.isdigit() or (i > 0 and t[0].isupper())}
    order = [w for w in dict.fromkeys(t.lower() for t in tokens) if w not in _STOP]
    new = [w for w in order if w not in q]
    weight = {w: 0.7 ** k * (3.0 if w in named else 1.0) for k, w in enumerate(new)}
    best, best_score = None, 0.0
    for i, sentence in enumerate(split_sentences(passage)):
        s = _words(sentence)
        if not s & weight.keys():
            continue  # at least one answer word beyond the question
        score = sum(weight[w] for w in s & weight.keys()) + 0.05 * len(s & q & set(order))
        if score > best_score:
            best, best_score = i, score
    return best


def escape_md(text: str) -> str:
    """Plain text safe inside st.markdown (no HTML, no LaTeX from "$", no Markdown syntax)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def escape_label(text: str) -> str:
    """Widget labels render Markdown but not HTML: escape only the Markdown."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def passage_markdown(passage: str, highlight: int | None) -> str:
    """The passage as one HTML block (escaped, so Markdown and "$" inside it stay literal), the
    answer's sentence in <mark>; blank lines become <br> so the block is never cut in two."""
    def esc(t: str) -> str:
        return html.escape(t, quote=False).replace("$", "&#36;").replace("\n\n", "<br><br>").replace("\n", " ")
    parts = split_sentences(passage)
    return " ".join(f"<mark>{esc(s)}</mark>" if i == highlight else esc(s) for i, s in enumerate(parts))


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
            target = f' id="{anchor}-{s["n"]}"' if anchor else ""
            st.markdown(f'<div{target} class="distilrag-src">{passage_markdown(s["text"], hl)}</div>',
                        unsafe_allow_html=True)
            st.caption(f"doc id {escape_md(s['docid'])} · retrieval score {s['score']:.4f}"
                       + (" · cited in the answer" if is_cited else ""))
