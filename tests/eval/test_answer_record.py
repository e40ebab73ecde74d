"""The answer record (rag.records.AnswerRecord) is the line eval/run.py writes: every line of a
run's answers.jsonl reads into it and writes back key for key, whatever its outcome."""
from dataclasses import replace

from eval.run import run_eval
from rag.records import AnswerRecord, from_dict, read_jsonl, to_dict
from tests.eval.test_harness import answer_from_prompt, cfg_for, tiny  # noqa: F401  (tiny: a fixture)
from tests.fakes import scripted_llm

BASE = dict(qid="q1", question="Who?", references=["A"], retriever="bm25", retrieved=["d1", "d2"],
            scores=[2.0, 1.0], contexts=["A did it.", "B"], timings={"retrieve_s": 0.01})


def test_round_trip_and_the_keys_each_outcome_writes():
    answered = AnswerRecord(**BASE, answer="A [1].", cited_docids=["d1"], no_answer=False, qa={"em": 1.0},
                            grounding={"lexical": {"supported": True, "reason": "r"}},
                            checks={"abstained": 0.0}, cached=True)
    ir = AnswerRecord(**{**BASE, "contexts": []}, qa={"answer_in_context": 1.0})
    failed = AnswerRecord(**BASE, error="answering failed: boom")
    for rec in (answered, ir, failed):
        assert from_dict(AnswerRecord, to_dict(rec)) == rec
    assert set(to_dict(answered)) == set(BASE) | {"answer", "cited_docids", "no_answer", "qa", "grounding",
                                                  "checks", "cached"}
    assert to_dict(ir) == {**BASE, "contexts": [], "answer": None, "qa": {"answer_in_context": 1.0}}
    assert set(to_dict(failed)) == set(BASE) | {"error"}  # no answer key: redone on resume


def test_every_line_of_a_run_reads_back_key_for_key(tiny):  # noqa: F811
    def flaky(prompt):
        if "oxygen" in prompt:
            raise RuntimeError("boom")
        return answer_from_prompt(prompt)

    runs = [run_eval(cfg_for(tiny), out=tiny / "run", llm=scripted_llm(answer_from_prompt), progress=False,
                     report=False),
            run_eval(cfg_for(tiny, retrieval_only=True), out=tiny / "ir", progress=False, report=False)]
    try:
        run_eval(replace(cfg_for(tiny), answer_cache=False), out=tiny / "err", llm=scripted_llm(flaky),
                 progress=False, report=False)
    except Exception:
        pass
    lines = [d for r in runs + [tiny / "err"] for d in read_jsonl(r / "bm25" / "answers.jsonl")]
    assert any(d.get("error") for d in lines) and any(d["answer"] is None for d in lines if "answer" in d)
    assert any(d.get("checks") for d in lines)
    for d in lines:
        assert to_dict(from_dict(AnswerRecord, d)) == d
