"""Fixtures for the app tests: a three-document corpus folder, a private app home per test, the
scripted fake LLM in place of the real one, and an optional "published" distilled model.

The real MiniLM base embedder is used (a handful of passages embed in well under a second);
the LLM is always the scripted fake here. The browser test starts the real app instead.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOCS = {
    "broncos.txt": "Super Bowl 50 was an American football game played in 2016. The Denver Broncos "
                   "represented the AFC at Super Bowl 50 and won it. The Carolina Panthers "
                   "represented the NFC.",
    "chopin.md": "# Chopin\n\nFrédéric Chopin was a Polish composer and virtuoso pianist. Chopin was born "
                 "in Żelazowa Wola in 1810 and moved to Paris at the age of twenty.",
    "nile.txt": "The Nile is a major north-flowing river in northeastern Africa. It flows into the "
                "Mediterranean Sea. Its water costs $0 to look at.",
}


def fake_answer(prompt: str) -> str:
    """Answer like a well-behaved RAG model: the source-1 sentence closest to the question, cited."""
    question = prompt.split("Question:", 1)[1].split("\n", 1)[0].lower()
    # Up to the next numbered source or the question; tolerates the context arriving as a list repr.
    src = re.search(r"\[1\] (?:\([^)]*\) )?(.*?)(?:\\n|\n)?(?:\[2\]|'\]|\n\nQuestion:)", prompt, re.S)
    if not src:
        return "I don't know based on the provided documents."
    qwords = set(re.findall(r"\w+", question))
    sentences = re.split(r"(?<=\.)\s+", src.group(1).replace("\\n", " ").strip())
    best = max(sentences, key=lambda s: len(qwords & set(re.findall(r"\w+", s.lower()))))
    return f"{best.rstrip('.')} [1]."


@pytest.fixture
def corpus_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "minidocs"
    d.mkdir()
    for name, text in DOCS.items():
        (d / name).write_text(text, encoding="utf-8")
    monkeypatch.setenv("DISTILRAG_CORPUS", str(d))
    return d


@pytest.fixture
def app_home(tmp_path, monkeypatch) -> Path:
    """A fresh data dir per test (uploads, feedback, indexes), nothing published."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DISTILRAG_HOME", str(home))
    for var in ("DISTILRAG_DISTILLED", "DISTILRAG_RANKER", "DISTILRAG_LLM_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    import streamlit as st

    from app import services
    from rag import llm

    st.cache_resource.clear()  # chains/corpora/LLMs made by an earlier test must not leak in
    services.forget_llm()
    # Nor the embedded server an earlier test of this process started (it serves another data dir).
    monkeypatch.setattr(llm, "_server", None)
    yield home
    st.cache_resource.clear()
    services.forget_llm()


@pytest.fixture
def fake_llm(monkeypatch):
    """Every LLM the app makes is a scripted fake; the list collects them to inspect prompts."""
    from app import services
    from tests.fakes import scripted_llm

    made = []

    def make(cfg):
        llm = scripted_llm(fake_answer)
        made.append(llm)
        return llm
    monkeypatch.setattr(services, "make_llm", make)
    return made


@pytest.fixture
def published_distilled(tmp_path, monkeypatch) -> Path:
    """A "distilled" model: the base MiniLM's files linked into a new dir, with a model card."""
    from rag.models import base_embedder_path

    base = Path(base_embedder_path())
    d = tmp_path / "distilled-minilm"
    d.mkdir()
    for f in base.iterdir():
        (d / f.name).symlink_to(f, target_is_directory=f.is_dir())
    card = {"name": "distilled-minilm-test", "created": "2026-11-23T10:00:00",
            "distill": {"base_dev": {"ndcg@10": 0.772}, "best_dev": {"ndcg@10": 0.801}}}
    (d / "distilrag_card.json").write_text(json.dumps(card))
    monkeypatch.setenv("DISTILRAG_DISTILLED", str(d))
    return d
