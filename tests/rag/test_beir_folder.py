"""A BEIR export as it comes (corpus.jsonl, queries.jsonl with every split's queries, qrels/<split>.tsv
with a header) is a corpus like the shipped ones: its splits, its gold, and a query log that holds
its test questions does not teach them. One question-file reader serves the retrain and the harness."""
from __future__ import annotations

import json

import pytest

from rag.errors import UserError

DOCS = [("d1", "Penicillin", "Penicillin was discovered by Alexander Fleming in 1928."),
        ("d2", "Insulin", "Insulin is a hormone that regulates blood glucose."),
        ("d3", "Scurvy", "Vitamin C deficiency causes scurvy."),
        ("d4", "Statins", "Statins lower LDL cholesterol.")]
QUERIES = {"q1": "who discovered penicillin", "q2": "what hormone regulates blood sugar",
           "q3": "what causes scurvy", "q4": "what do statins lower", "q5": "an unjudged question"}
SPLITS = {"train": [("q4", "d4")], "dev": [("q3", "d3")], "test": [("q1", "d1"), ("q2", "d2")]}


@pytest.fixture
def beir(tmp_path):
    root = tmp_path / "scifacts"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": t, "text": x, "metadata": {}}) + "\n"
                                               for d, t, x in DOCS))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t, "metadata": {}}) + "\n"
                                                for q, t in QUERIES.items()))
    for split, pairs in SPLITS.items():
        (root / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs))
    return root


def test_the_folder_loads_as_its_corpus_splits_and_gold(beir):
    from rag.corpus import CorpusError, corpus_key, load_corpus, load_qrels, load_queries

    corpus = load_corpus(beir)
    assert [p.docid for p in corpus.passages] == ["d1", "d2", "d3", "d4"] and corpus.name == "scifacts"
    assert corpus.by_id["d1"].title == "Penicillin" and corpus.key == corpus_key(beir)
    assert [q.qid for q in load_queries(beir, "test")] == ["q1", "q2"]
    assert {q.qid: q.split for q in load_queries(beir)} == {"q1": "test", "q2": "test", "q3": "dev",
                                                          "q4": "train", "q5": ""}
    assert load_qrels(beir) == {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d4": 1}}
    (beir / "qrels" / "dev.tsv").unlink()
    with pytest.raises(CorpusError, match=r"no qrels/dev.tsv \(it has test, train\)"):
        load_queries(beir, "dev")


def test_qrels_in_trec_and_beir_form_and_bad_lines(tmp_path):
    from rag.metrics import read_qrels

    trec = tmp_path / "trec.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 2\n\nq2 0 d9 0\n")
    assert read_qrels(trec) == {"q1": {"d1": 1, "d2": 2}, "q2": {"d9": 0}}
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n")
    assert read_qrels(beir) == {"q1": {"d1": 1, "d2": 2}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1 0 d1 1\nq2 d2 high\n")
    with pytest.raises(UserError, match=r"bad.tsv:2: qrels lines are 'qid iter docid rel' \(TREC\)"):
        read_qrels(bad)
    with pytest.raises(UserError, match="not found"):
        read_qrels(tmp_path / "missing.tsv")


def test_eval_reads_the_test_split_and_leaves_out_unjudged_questions(beir, capsys):
    from eval.plan import EvalConfig
    from eval.questions import load_questions

    qs, qrels = load_questions(EvalConfig(corpus=str(beir), split="test"))
    assert [q.qid for q in qs] == ["q1", "q2"] and qrels["q1"] == {"d1": 1}
    # The user's way: the whole queries.jsonl and one split's qrels: only judged questions are asked.
    qs, qrels = load_questions(EvalConfig(corpus=str(beir / "corpus.jsonl"), split="test",
                                          queries=str(beir / "queries.jsonl"), qrels=str(beir / "qrels" / "test.tsv")))
    assert [q.qid for q in qs] == ["q1", "q2"] and set(qrels) == {"q1", "q2"}
    assert "3 of the 5 questions have neither qrels nor answers" in capsys.readouterr().err


def test_a_log_holding_the_corpus_test_and_dev_questions_does_not_teach_them(beir, tmp_path, capsys):
    from rag.config import ConfigError, load_sections
    from retriever_training.queries import QueriesConfig, query_pool, select_queries
    from retriever_training.recipe import SECTIONS
    from retriever_training.splits import preflight

    log = tmp_path / "log.txt"  # the same questions as text: other ids, the same words
    log.write_text("Who discovered penicillin\nwhat causes  scurvy\nwhat do statins lower\nhow do vaccines work\n")
    for path in (beir / "queries.jsonl", log):
        cfg = QueriesConfig(source="file", file=str(path), n=10)
        kept = {" ".join(q.query.lower().split()) for q in query_pool(cfg, str(beir))}
        assert not kept & {"who discovered penicillin", "what causes scurvy"}, path
        assert "what do statins lower" in kept  # a train question teaches
    select_queries(QueriesConfig(source="file", file=str(log), n=10), str(beir))
    assert "2 queries of" in capsys.readouterr().out
    only_test = tmp_path / "test_only.txt"
    only_test.write_text("who discovered penicillin\nwhat hormone regulates blood sugar\n")
    cfgs = load_sections(None, SECTIONS, [f"label.corpus={beir}", "queries.source=file", f"queries.file={only_test}"])
    with pytest.raises(ConfigError, match="every query of .* is one of the corpus's own dev/test questions"):
        preflight(cfgs, {})


def test_one_reader_for_logs_feedback_and_beir_queries(tmp_path, capsys):
    from rag.questions import QuestionsError, question_id, read_questions

    beir_like = tmp_path / "queries.jsonl"
    beir_like.write_text('{"_id": "7", "text": "what is x", "metadata": {}}\n{"question": "what is y"}\n')
    qs = read_questions(beir_like)
    assert [(q.qid, q.query) for q in qs] == [("7", "what is x"), (question_id("what is y"), "what is y")]
    exported = tmp_path / "log.txt"  # JSON lines under a .txt name are read as JSONL
    exported.write_text('{"query": "a?", "answers": "b"}\n{"query": "a?"}\n')
    qs = read_questions(exported)
    assert [(q.query, q.answers) for q in qs] == [("a?", ["b"])]  # a repeat without a qid is kept once
    assert "1 repeated questions are kept once" in capsys.readouterr().err
    gold = tmp_path / "gold.jsonl"  # the answer fields of other exports: "answer", SQuAD's {"text": [...]}
    gold.write_text('{"question": "q1", "answer": "Paris"}\n'
                    '{"question": "q2", "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [0, 7]}}\n'
                    '{"question": "q3", "answers": ["x", ""]}\n{"question": "q4", "answer": ""}\n')
    assert [q.answers for q in read_questions(gold)] == [["Paris"], ["Denver Broncos", "Broncos"], ["x"], []]
    text = tmp_path / "plain.txt"
    text.write_text("{not json} at the start of a question?\nsecond?\n")
    assert [q.query for q in read_questions(text)] == ["{not json} at the start of a question?", "second?"]
    with pytest.raises(QuestionsError, match="qid '7' appears twice"):
        beir_like.write_text('{"_id": "7", "text": "a"}\n{"_id": "7", "text": "b"}\n')
        read_questions(beir_like)


def test_its_train_split_can_be_the_labelled_queries_and_is_pointed_out(beir, capsys):
    from retriever_training.queries import QueriesConfig, note_own_questions, select_queries

    assert [q.qid for q in select_queries(QueriesConfig(source="split", split="train", n=10), str(beir))] == ["q4"]
    note_own_questions(str(beir))
    assert "has 1 train questions of its own; --queries.source=split" in capsys.readouterr().out
    (beir / "qrels" / "train.tsv").unlink()
    note_own_questions(str(beir))  # nothing to point at: no note
    assert capsys.readouterr().out == ""


def test_a_csv_or_tsv_log_with_a_header(tmp_path):
    from rag.questions import QuestionsError, read_questions

    csv_log = tmp_path / "log.csv"
    csv_log.write_text('id,Question,answer\n7,"Who won, and when?",Denver|the Broncos\n,Where?,\n')
    qs = read_questions(csv_log)
    assert [(q.qid, q.query, q.answers) for q in qs[:1]] == [("7", "Who won, and when?", ["Denver", "the Broncos"])]
    assert qs[1].query == "Where?" and qs[1].answers == [] and qs[1].qid.startswith("q-")
    tsv_log = tmp_path / "log.tsv"
    tsv_log.write_text("query\tcount\nhow do vaccines work\t12\n")
    assert [q.query for q in read_questions(tsv_log)] == ["how do vaccines work"]
    tsv_log.write_text("how do vaccines work\t12\n")  # no header: say what the first row must be
    with pytest.raises(QuestionsError, match="first row must name the columns"):
        read_questions(tsv_log)
