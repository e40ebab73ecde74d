"""The held-out report: paired base-vs-distilled figures, the base cached, the card's table."""
from pathlib import Path

import retriever_training.heldout as heldout
from rag.corpus import Corpus
from rag.records import Passage, Query
from retriever_training.retrain import split_queries


calls: list[str] = []  # model paths fake_values was asked about


def fake_values(model_path, corpus, queries, qrels, max_seq_length, bf16):
    """Per-query values that depend on the model: the student gets every query right, the base half."""
    calls.append(model_path)
    good = model_path.endswith("student")
    return {m: {q.qid: (1.0 if good or i % 2 == 0 else 0.0) for i, q in enumerate(queries)}
            for m in heldout.REPORTED}


def test_report_pairs_base_and_student_and_caches_the_base(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(heldout, "per_query_metrics", fake_values)
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    corpus = Corpus(name="c", passages=[Passage(docid="d#0", title="d", text="t", source="d")])
    queries = [Query(qid=f"q{i}", query="?", split="test") for i in range(10)] + [Query(qid="unjudged", query="?")]
    qrels = {f"q{i}": {"d#0": 1} for i in range(10)}
    calls.clear()
    rep = heldout.heldout_report(tmp_path / "student", str(base), corpus, queries, qrels, "test", 256, False)
    nd = rep["metrics"]["ndcg@10"]
    assert rep["queries"] == 10 and nd["n"] == 10
    assert (nd["mean_a"], nd["mean_b"], nd["delta"]) == (0.5, 1.0, 0.5) and nd["p_value"] < 0.05
    heldout.heldout_report(tmp_path / "student", str(base), corpus, queries, qrels, "test", 256, False)
    assert calls == [str(base), str(tmp_path / "student"), str(tmp_path / "student")]  # base computed once

    table = heldout.heldout_card_section(rep)
    assert "Held-out test-split retrieval (whole corpus, 10 queries)" in table
    assert "| ndcg@10 | 0.5000 | 1.0000 | +0.5000 |" in table
    assert heldout.heldout_card_section({"split": "test", "queries": 0}) == ""


def test_split_queries_is_empty_without_the_split_or_gold(tmp_path):
    from rag.records import write_jsonl

    d = tmp_path / "c"
    write_jsonl(d / "queries.jsonl.gz", [Query(qid="a", query="?", split="train"),
                                          Query(qid="b", query="?", split="test"),
                                          Query(qid="c", query="?", split="test")])
    assert [q.qid for q in split_queries(str(d), "test", {"b": {"x": 1}})] == ["b"]
    assert split_queries(str(d), "dev", {"b": {"x": 1}}) == []      # the corpus has no dev split
    assert split_queries(str(d), "", {"b": {"x": 1}}) == []         # switched off
    assert split_queries(str(d), "test", {}) == []                  # no gold: nothing to report
