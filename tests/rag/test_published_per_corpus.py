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


def test_best_spec_is_the_published_verdicts_winner_else_the_fallback(tmp_path, monkeypatch):
    import json

    from rag.embedder import set_published
    from rag.pipelines import best_spec, pipeline_scores

    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DISTILRAG_DISTILLED", raising=False)
    assert best_spec("squad_dev") == "base" and best_spec("squad_dev", fallback="") == ""
    model = _model(tmp_path, "model")
    run = tmp_path / "runs" / "x"
    (model / "distilrag_card.json").write_text(json.dumps({"verdict": {
        "best_published": "hybrid:distilled+ranker",
        "pipelines": [{"spec": f"hybrid:{run}/student+{run}/ranker", "ndcg@10": 0.9}, {"spec": "bm25", "ndcg@10": 0.8}]}}))
    set_published("distilled", model, "squad_dev")
    assert best_spec("squad_dev") == "hybrid:distilled+ranker"
    assert pipeline_scores("squad_dev")[0] == {"hybrid:distilled+ranker": 0.9, "bm25": 0.8}
    assert best_spec(str(tmp_path / "other")) == "base"  # another corpus: its own (none)
