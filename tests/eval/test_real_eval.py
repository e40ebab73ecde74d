"""A tiny REAL evaluation: real MiniLM index, real embedded LLM answering, two SQuAD questions.

The corpus is one squad_dev article (54 paragraphs), so the real index builds in seconds; the
two questions cost ~15 s each on two CPU cores. Skipped when the embedded model is not on disk
(run `distilrag llm fetch` once).
"""
import json

import pytest

from rag.records import read_jsonl, write_jsonl

pytestmark = pytest.mark.llm
ARTICLE = "Super_Bowl_50"
QIDS = ["56be4db0acb8001400a502ec", "56be4db0acb8001400a502ed"]  # AFC team, NFC team


@pytest.fixture
def one_article(tmp_path):
    from rag.corpus import load_corpus, load_qrels, load_queries
    from rag.models import gguf_path

    if not gguf_path().exists():
        pytest.skip("the embedded LLM is not downloaded: run `distilrag llm fetch`")
    corpus = load_corpus("squad_dev")
    write_jsonl(tmp_path / "sb50.jsonl", [{"_id": p.docid, "title": p.title, "text": p.text}
                                          for p in corpus.passages if p.docid.startswith(ARTICLE + "#")])
    qs = {q.qid: q for q in load_queries("squad_dev", "test")}
    write_jsonl(tmp_path / "q.jsonl", [{"qid": q, "query": qs[q].query, "answers": qs[q].answers} for q in QIDS])
    qrels = load_qrels("squad_dev")
    (tmp_path / "qrels.tsv").write_text("".join(f"{q}\t0\t{d}\t{r}\n" for q in QIDS for d, r in qrels[q].items()))
    return tmp_path


def test_real_eval_two_questions(one_article, monkeypatch):
    from eval.run import main

    t = one_article
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(t / "runs"))
    rc = main(["--corpus", str(t / "sb50.jsonl"), "--split", "", "--queries", str(t / "q.jsonl"),
               "--qrels", str(t / "qrels.tsv"), "--retrievers", "base", "--top-k", "3",
               "--out", str(t / "run"), "--quiet"])
    assert rc == 0
    recs = list(read_jsonl(t / "run" / "base" / "answers.jsonl"))
    assert [r["qid"] for r in recs] == QIDS
    for r in recs:
        assert r["answer"] and not r.get("error")
        assert r["timings"]["total_s"] > 0 and len(r["contexts"]) == 3
    m = json.loads((t / "run" / "base" / "metrics.json").read_text())
    assert m["ir"]["recall@5"] == 1.0  # both answers sit in the article's first paragraph
    assert m["qa"]["answer_in_context"] == 1.0
    assert m["qa"]["f1"] > 0.2  # the 1.5B model names both teams in probes; allow one miss
    assert (t / "run" / "report.html").exists()
