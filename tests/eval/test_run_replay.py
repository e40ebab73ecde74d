"""`--retrievers run:FILE`: a TREC run file made earlier stands in for the model that made it."""
import gzip
from dataclasses import replace

import pytest

from eval.run import run_eval
from rag.errors import UserError
from rag.pipelines import build_pipeline, slug
from rag.records import read_jsonl
from tests.eval.test_harness import answer_from_prompt, cfg_for, tiny  # noqa: F401  (tiny: a fixture)
from tests.fakes import scripted_llm


def never_called(prompt):
    raise AssertionError(f"the LLM was asked: {prompt[:80]!r}")


def by_qid(path):
    return {r["qid"]: r for r in read_jsonl(path)}


def test_a_replayed_run_hands_the_llm_the_same_passages_and_pays_nothing(tiny):
    run_eval(cfg_for(tiny), out=tiny / "run", llm=scripted_llm(answer_from_prompt), progress=False)
    trec = tiny / "run" / "bm25" / "run.trec"
    gz = tiny / "bm25.trec.gz"  # committed run files are compressed
    gz.write_bytes(gzip.compress(trec.read_bytes()))
    spec = f"run:{gz}"
    assert slug(spec) == "run-bm25"
    # Every prompt equals one the first run paid: the answer cache serves them all.
    run_eval(replace(cfg_for(tiny), retrievers=(spec,)), out=tiny / "replay", llm=scripted_llm(never_called),
             progress=False)
    first, replayed = by_qid(tiny / "run" / "bm25" / "answers.jsonl"), by_qid(tiny / "replay" / "run-bm25" / "answers.jsonl")
    assert first.keys() == replayed.keys() == {"q1", "q2", "q3", "q4"}
    for q in first:
        assert replayed[q]["retrieved"] == first[q]["retrieved"]
        assert replayed[q]["answer_key"] == first[q]["answer_key"] and replayed[q]["cached"]
        assert replayed[q]["answer"] == first[q]["answer"] and replayed[q]["qa"] == first[q]["qa"]


def test_a_run_missing_questions_or_from_another_corpus_fails_before_any_answer(tiny):
    run_path = tiny / "bm25.trec"
    run_path.write_text("q1 Q0 sb#0 1 2.0 x\nq1 Q0 sb#1 2 1.0 x\n")
    with pytest.raises(UserError, match="no ranking for 3 of the 4 questions"):
        run_eval(replace(cfg_for(tiny), retrievers=("bm25", f"run:{run_path}")), out=tiny / "r1",
                 llm=scripted_llm(never_called), progress=False)
    run_path.write_text("".join(f"q{i} Q0 nowhere#{i} 1 1.0 x\n" for i in range(1, 5)))
    with pytest.raises(UserError, match="passages that corpus .* does not have .*nowhere#1"):
        run_eval(replace(cfg_for(tiny), retrievers=(f"run:{run_path}",)), out=tiny / "r2",
                 llm=scripted_llm(never_called), progress=False)
    with pytest.raises(UserError, match="does not exist"):
        run_eval(replace(cfg_for(tiny), retrievers=(f"run:{tiny / 'none.trec'}",)), out=tiny / "r3",
                 llm=scripted_llm(never_called), progress=False)


def test_a_replay_follows_the_run_order_not_the_file_order_and_keeps_its_depth(tiny):
    from rag.corpus import load_corpus
    from rag.pipelines import retrieval_function

    f = tiny / "mixed.trec"
    f.write_text("q1 Q0 am#0 3 0.5 x\nq1 Q0 sb#1 1 3.0 x\nq1 Q0 sb#0 2 2.0 x\n")
    retrieve = retrieval_function(f"run:{f}", load_corpus(str(tiny / "corpus.jsonl")), depth=2)
    nodes = retrieve("Which team won Super Bowl 50?", "q1")
    assert [n.node.node_id for n in nodes] == ["sb#1", "sb#0"]
    assert nodes[0].node.metadata["title"] == "Super Bowl 50" and "Levi's Stadium" in nodes[0].node.get_content()
    with pytest.raises(UserError, match="no ranking for question 'q9'"):
        retrieve("?", "q9")


def test_the_chat_and_ask_refuse_a_run_file_with_what_to_do(tiny):
    with pytest.raises(UserError, match="only `distilrag eval` can use it"):
        build_pipeline(f"run:{tiny / 'x.trec'}", str(tiny / "corpus.jsonl"))
