"""A tiny real retrain: real query-likelihood labels from the embedded LLM, real MiniLM ranker
and student, a few steps each; the published directory must load with plain SentenceTransformer."""
import json
from pathlib import Path

import pytest

from rag.corpus import load_corpus, load_queries
from rag.records import Passage, Query, TeacherScores, read_jsonl, write_jsonl
from rag.settings import CORPORA_DIR


def make_mini_corpus(root: Path, n_articles: int = 3, paras: int = 6, qs_per_para: int = 2,
                     layout: str = "shipped") -> Path:
    """A slice of squad_dev in the shipped layout, or as a BEIR export (corpus.jsonl, queries.jsonl
    with every split's questions, qrels/<split>.tsv with a header): a few articles per split, gold kept."""
    full = load_corpus("squad_dev")
    queries = load_queries("squad_dev")
    gold = {}
    for line in (CORPORA_DIR / "squad_dev" / "qrels.tsv").read_text().splitlines():
        q, _, d, _ = line.split("\t")
        gold[q] = d
    split_of = json.loads((CORPORA_DIR / "squad_dev" / "split.json").read_text())["articles"]
    keep_articles = []
    for split in ("train", "dev", "test"):
        keep_articles += [a for a, s in sorted(split_of.items()) if s == split][:n_articles if split != "test" else 1]
    passages = [p for p in full.passages if p.source in keep_articles and int(p.docid.split("#")[1]) < paras]
    keep = {p.docid for p in passages}
    per_doc: dict[str, int] = {}
    qs = []
    for q in queries:
        d = gold[q.qid]
        if d in keep and per_doc.get(d, 0) < qs_per_para:
            per_doc[d] = per_doc.get(d, 0) + 1
            qs.append(q)
    d = root / "mini_squad"
    if layout == "beir":
        write_jsonl(d / "corpus.jsonl", [{"_id": p.docid, "title": p.title, "text": p.text} for p in passages])
        write_jsonl(d / "queries.jsonl", [{"_id": q.qid, "text": q.query, "metadata": {}} for q in qs])
        (d / "qrels").mkdir()
        for split in ("train", "dev", "test"):
            (d / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
                f"{q.qid}\t{gold[q.qid]}\t1\n" for q in qs if q.split == split))
        return d
    write_jsonl(d / "corpus.jsonl.gz", passages)
    write_jsonl(d / "queries.jsonl.gz", qs)
    (d / "qrels.tsv").write_text("".join(f"{q.qid}\t0\t{gold[q.qid]}\t1\n" for q in qs))
    return d


@pytest.mark.llm
@pytest.mark.parametrize("layout", ["shipped", "beir"])
def test_tiny_retrain_end_to_end(tmp_path, monkeypatch, layout):
    """The shipped layout with its train split as the queries; a BEIR export with its whole
    queries.jsonl as the log (its dev and test questions must not teach)."""
    from rag.config import load_sections
    from retriever_training.retrain import SECTIONS, retrain

    corpus_dir = make_mini_corpus(tmp_path, layout=layout)
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    source = (["queries.source=split"] if layout == "shipped" else
              ["queries.source=file", f"queries.file={corpus_dir / 'queries.jsonl'}"])
    overrides = [f"label.corpus={corpus_dir}", f"label.labels_dir={tmp_path / 'labels'}",
                 *source, "queries.n=6", "candidates.depth=6", "llm_rank.max_candidates=3",
                 "ranker.epochs=1", "ranker.min_steps=0", "ranker.batch_size=4",
                 "ranker.heldout_fraction=0.3", "ranker.list_size=3",
                 "teacher.unlabelled_queries=6", "teacher.depth=4",
                 "distill.epochs=1", "distill.docs_per_query=4", "distill.batch_size=4",
                 "distill.max_seq_length=128", "distill.dev_queries=10",
                 "run.name=tiny", "run.force=true"]
    cfgs = load_sections(None, SECTIONS, overrides)
    metrics = retrain(cfgs, progress=False)

    rankings = [json.loads(line) for line in (tmp_path / "labels" / "rankings.jsonl").read_text().splitlines()]
    assert len(rankings) == 6
    assert all(len(r["ranked_docids"]) == 3 and sorted(r["ranked_docids"]) == sorted(r["docids_in"]) for r in rankings)
    assert all(r["scores"] == sorted(r["scores"], reverse=True) for r in rankings)  # best first
    assert all(s < 0 for r in rankings for s in r["scores"])  # mean log-probabilities

    # The ranker trains on 3-candidate lists and scores 4 per query (the student's) as the teacher.
    assert json.loads((tmp_path / "runs" / "tiny" / "ranker_metrics.json").read_text())["list_size"] == 3
    teacher = list(read_jsonl(tmp_path / "runs" / "tiny" / "teacher_scores.jsonl.gz", TeacherScores))
    assert teacher and all(len(t.docids) == 4 for t in teacher)
    # Neither the ranker nor the student saw a held-out labelled query.
    used = metrics["queries_used"]
    assert used["labelled"] == 6 and used["heldout"] >= 1 and used["unlabelled_from_log"] == 6
    held = {r["qid"] for r in rankings if r["qid"] not in {t.qid for t in teacher if t.labelled}}
    assert len(held) == used["heldout"]
    judging = {q.qid for q in load_queries(corpus_dir) if q.split in ("dev", "test")}
    assert judging and not judging & ({r["qid"] for r in rankings} | {t.qid for t in teacher})

    from sentence_transformers import SentenceTransformer

    model_dir = Path(metrics["model"])
    card = json.loads((model_dir / "distilrag_card.json").read_text())
    assert card["teacher"]["queries"] == 6 and card["teacher"]["mode"] == "query_likelihood"
    assert "ndcg@10" in card["distill"]["best_dev"] and "ndcg@10" in card["distill"]["base_dev"]
    assert (model_dir / "README.md").read_text().startswith("---")
    # The held-out split: every judged test query, base and distilled means with a paired bootstrap.
    n_test = sum(q.split == "test" for q in load_queries(corpus_dir))
    held = card["heldout"]
    assert n_test > 0 and held["split"] == "test" and held["queries"] == n_test
    assert held["metrics"]["ndcg@10"]["n"] == n_test and 0 < held["metrics"]["ndcg@10"]["mean_a"] <= 1
    assert held["metrics"]["ndcg@10"]["ci_low"] <= held["metrics"]["ndcg@10"]["delta"] <= held["metrics"]["ndcg@10"]["ci_high"]
    assert "Held-out test-split retrieval" in (model_dir / "README.md").read_text()
    emb = SentenceTransformer(str(model_dir), device="cpu").encode(["a question"])
    assert emb.shape == (1, 384)

    # Resumable: a second run skips every finished stage (no LLM, no training).
    def finished(stage):
        return json.loads((tmp_path / "runs" / "tiny" / "stages" / f"{stage}.json").read_text())["finished_at"]

    before = {s: finished(s) for s in ("distill", "heldout")}
    retrain(cfgs, progress=False)
    assert {s: finished(s) for s in ("distill", "heldout")} == before
