"""Published models are kept per corpus: a retrain on one corpus never re-points another's."""
from __future__ import annotations

import pytest


def _model(tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    (d / "modules.json").write_text("[]")
    (d / "model.safetensors").write_bytes(name.encode())
    return d


def test_each_corpus_keeps_its_own_distilled_and_ranker(tmp_path, monkeypatch):
    from rag.embedder import published_path, resolve_embedder, set_published

    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DISTILRAG_DISTILLED", raising=False)
    a, b = tmp_path / "a" / "corpus.jsonl", tmp_path / "b" / "corpus.jsonl"  # same base name
    set_published("distilled", _model(tmp_path, "student-a"), str(a))
    set_published("ranker", _model(tmp_path, "ranker-a"), str(a))
    set_published("distilled", _model(tmp_path, "student-b"), str(b))
    assert published_path("distilled", str(a)).name == "student-a"
    assert published_path("distilled", str(b)).name == "student-b"
    assert published_path("ranker", str(a)).name == "ranker-a"
    assert published_path("ranker", str(b)) is None  # b published no ranker: not a's
    assert published_path("distilled", "squad_dev") is None
    assert published_path("distilled") is None  # no corpus named: nothing implicit
    assert resolve_embedder("distilled", str(b)).path.endswith("student-b")
    from rag.embedder import EmbedderNotFound

    with pytest.raises(EmbedderNotFound, match="squad_dev"):
        resolve_embedder("distilled", "squad_dev")


def test_corpus_key_tells_same_named_sources_apart(tmp_path):
    from rag.corpus import corpus_key

    one, two = tmp_path / "x" / "docs", tmp_path / "y" / "docs"
    assert corpus_key("squad_dev") == "squad_dev"
    assert corpus_key(one) != corpus_key(two) and corpus_key(one).startswith("docs-")
    assert corpus_key(one) == corpus_key(str(one) + "/")  # the same folder, however it is written
