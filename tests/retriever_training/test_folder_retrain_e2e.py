"""The own-corpus path as a user runs it, real models throughout: a folder of text documents the
loader chunks, a plain-text question log, no gold labels; `distilrag retrain` labels with the
embedded LLM, trains ranker and student, judges them on held-out LLM-labelled queries and publishes
for that corpus only; `distilrag eval` then scores both retrievers by answer-in-context."""
import json
from pathlib import Path

import pytest

from rag.corpus import load_corpus, load_qrels, load_queries
from rag.settings import CORPORA_DIR


def make_document_folder(root: Path, articles: int = 3, paras: int = 4) -> tuple[Path, list]:
    """Train-split articles of squad_dev as .txt documents (paragraphs joined, so passages are the
    loader's chunks, not gold paragraphs) and the gold questions on those paragraphs."""
    full, queries = load_corpus("squad_dev"), load_queries("squad_dev")
    split_of = json.loads((CORPORA_DIR / "squad_dev" / "split.json").read_text())["articles"]
    picked = [a for a, s in sorted(split_of.items()) if s == "train"][:articles]
    docs = root / "docs"
    docs.mkdir()
    keep = set()
    for a in picked:
        ps = [p for p in full.passages if p.source == a and int(p.docid.split("#")[1]) < paras]
        keep |= {p.docid for p in ps}
        (docs / f"{ps[0].title}.txt").write_text("\n\n".join(p.text for p in ps) + "\n")
    gold = load_qrels("squad_dev")
    asked = [q for q in queries if keep & gold.get(q.qid, {}).keys()]
    return docs, asked


@pytest.mark.llm
def test_a_folder_and_a_question_log_retrain_publish_and_evaluate(tmp_path, monkeypatch, capsys):
    from app.cli import main
    from rag.embedder import published_path

    docs, asked = make_document_folder(tmp_path)
    assert len(asked) >= 16
    log = tmp_path / "questions.txt"
    log.write_text("".join(q.query + "\n" for q in asked[:16]))
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    command = ["retrain", "--corpus", str(docs), "--queries", str(log), "--force",
               "--queries.n=8", "--candidates.depth=4", "--llm_rank.max_candidates=3",
               "--ranker.epochs=1", "--ranker.min_steps=0", "--ranker.batch_size=4",
               "--ranker.heldout_fraction=0.5", "--ranker.list_size=3",
               "--teacher.depth=3", "--distill.epochs=1", "--distill.docs_per_query=3",
               "--distill.batch_size=4", "--distill.max_seq_length=128", "--run.name=folder"]
    # The dry run prices labelling and then the training stages, and trains nothing.
    assert main([*command, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "to label: 8 queries" in out and "then training: ~" in out and "4 labelled + 8 ranker-scored" in out
    assert not (tmp_path / "runs" / "folder" / "metrics.json").exists()
    code = main(command)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    # 8 labelled (some held out), the other 8 of the log scored by the ranker only; no gold anywhere.
    assert "queries: 8 labelled by the LLM" in out and "8 further from the log" in out
    assert "against the LLM's order" in out  # the checkpoint is chosen without a dev split

    run = tmp_path / "runs" / "folder"
    corpus = load_corpus(docs)
    assert corpus.chunking["unit"] == "sentence_splitter"
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["queries"] >= 1 and verdict["gold"] == {}
    assert {"ndcg@10", "top1"} <= verdict["llm"].keys()
    assert verdict["pipelines"] and verdict["best"]
    # the work each stage did, beside its time: the next dry run here prices by this machine's speed
    m = json.loads((run / "metrics.json").read_text())
    assert m["machine"] and set(m["training_work"]) == {"ranker", "teacher", "distill", "verdict"}
    assert all(v > 0 for v in m["training_work"].values())
    card = json.loads((Path(json.loads((run / "metrics.json").read_text())["model"]) / "distilrag_card.json").read_text())
    assert card["teacher"]["mode"] == "query_likelihood" and card["teacher"]["queries"] == 8

    # Published for this corpus only: the shipped corpus's "distilled" is not this model.
    mine = published_path("distilled", corpus)
    assert mine is not None and mine.exists()
    assert published_path("distilled", load_corpus("squad_dev")) != mine

    # Answer strings instead of qrels: answer-in-context for base and the distilled model.
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"qid": q.qid, "query": q.query, "answers": list(q.answers)}) + "\n"
                          for q in asked[16:26]))
    code = main(["eval", "--corpus", str(docs), "--queries", str(qa), "--retrievers", "base,distilled",
                 "--retrieval-only", "--name", "folder-eval", "--quiet"])
    assert code == 0, capsys.readouterr().err
    for spec in ("base", "distilled"):
        m = json.loads((tmp_path / "runs" / "eval" / "folder-eval" / spec / "metrics.json").read_text())
        assert m["n_answered"] == 10 and 0 < m["qa"]["answer_in_context"] <= 1, m  # the answers are in these documents
