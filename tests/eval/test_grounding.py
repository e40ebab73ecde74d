"""Grounding: the lexical check misses the Melbourne case, the LLM check catches it; the harness records both."""
import json
import re
from dataclasses import replace

import pytest

from rag.grounding import lexical_support, llm_support, read_yes_no, support
from rag.llm_cache import LLMCache
from rag.prompts import GROUNDING
from tests.fakes import scripted_llm

QUESTION = "What is the capital of Australia?"
MOVED = ("Australia's federal parliament first sat in Melbourne; in 1927 the capital moved from "
         "Melbourne to Canberra, the purpose-built capital city.")
STATES = "Canberra is the capital city of Australia."


def good_verifier(prompt: str) -> str:
    """Says yes only when the passage states the proposed answer is the capital (as a careful reader)."""
    passage = prompt.split("Passage: ", 1)[1].split("\n\n", 1)[0]
    ans = re.search(r"Proposed answer: (.*)", prompt).group(1).strip().rstrip(".")
    states = (f"{ans} is the capital" in passage) or (f"capital moved from" in passage and f"to {ans}" in passage)
    return "Yes." if states else "No, it says otherwise."


def test_melbourne_passes_the_lexical_check_and_fails_the_llm_check(tmp_path):
    lex = support("Melbourne [2]", [MOVED], QUESTION)
    assert lex.supported is True and lex.method == "lexical"  # the miss: "melbourne" is in [2]
    llm = scripted_llm(good_verifier)
    v = support("Melbourne [2]", [MOVED], QUESTION, method="llm", llm=llm, cache=LLMCache(tmp_path / "c.sqlite"),
                model_id="m")
    assert v.supported is False and v.method == "llm" and llm.calls == 1
    assert "Does this passage state that Melbourne is the answer" in llm.prompts[0]
    ok = support("Canberra [1]", [STATES], QUESTION, method="llm", llm=llm, model_id="m")
    assert ok.supported is True


def test_lexical_check_cases():
    assert lexical_support("Canberra", [], QUESTION).supported is False  # cites nothing
    assert lexical_support("Sydney [1]", [STATES], QUESTION).reason == "no cited passage contains ['sydney']"
    assert lexical_support("I don't know based on the provided documents.", [], QUESTION).supported is None
    # Words the question already has prove nothing; the answer's own words must be in the passage.
    assert lexical_support("The capital of Australia is Canberra [1].", [STATES], QUESTION).supported is True
    assert lexical_support("The capital of Australia [1].", [STATES], QUESTION).supported is None


def test_llm_check_is_cached_and_reads_only_yes_or_no(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = scripted_llm(good_verifier)
    for _ in range(2):
        llm_support("Melbourne [1]", [MOVED], QUESTION, llm, cache, "m")
    assert llm.calls == 1  # the second verdict came from the cache
    assert llm_support("Sydney", [], QUESTION, llm, cache, "m").supported is False and llm.calls == 1
    vague = scripted_llm(lambda p: "Possibly, the passage mentions it.")
    assert llm_support("Melbourne [1]", [MOVED], QUESTION, vague, None, "m").supported is None
    assert (read_yes_no(" yes"), read_yes_no("No."), read_yes_no("Yesterday")) == (True, False, None)
    assert GROUNDING.version >= 1
    with pytest.raises(ValueError):
        support("x [1]", ["x"], "q", method="llm")


def test_harness_records_both_verdicts_and_the_unsupported_rates(tmp_path, monkeypatch):
    from eval.run import EvalConfig, run_eval
    from rag.records import read_jsonl, write_jsonl

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "au#0", "title": "Australia", "text": MOVED},
                                            {"_id": "ox#0", "title": "Oxygen", "text": "Oxygen has atomic number 8."}])
    write_jsonl(tmp_path / "q.jsonl", [{"qid": "cap", "query": QUESTION},
                                       {"qid": "ox", "query": "What is the atomic number of oxygen?"}])

    def reader_and_verifier(prompt: str) -> str:
        if prompt.startswith("Passage: "):
            return good_verifier(prompt)
        return "Melbourne [1]." if "capital" in prompt else "I don't know based on the provided documents."

    cfg = EvalConfig(corpus=str(tmp_path / "corpus.jsonl"), split="", queries=str(tmp_path / "q.jsonl"),
                     retrievers=("bm25",), top_k=1, depth=2)
    cache = LLMCache(tmp_path / "c.sqlite")
    llm = scripted_llm(reader_and_verifier)
    run_eval(cfg, out=tmp_path / "run", llm=llm, progress=False, cache=cache)  # default: lexical only
    assert llm.calls == 2
    # Asking for the LLM check on the finished run adds it to the records that lack it: 1 verifier call.
    run_eval(replace(cfg, grounding="llm"), out=tmp_path / "run", llm=llm, progress=False, cache=cache)
    assert llm.calls == 3
    last = {r["qid"]: r for r in read_jsonl(tmp_path / "run" / "bm25" / "answers.jsonl")}
    assert last["cap"]["grounding"]["lexical"]["supported"] is True
    assert last["cap"]["grounding"]["llm"]["supported"] is False
    assert last["cap"]["checks"] == {"abstained": 0.0, "unsupported_lexical": 0.0, "unsupported_llm": 1.0}
    assert last["ox"]["checks"] == {"abstained": 1.0, "unsupported_lexical": 0.0, "unsupported_llm": 0.0}
    m = json.loads((tmp_path / "run" / "bm25" / "metrics.json").read_text())["answers"]
    assert (m["abstained"], m["unsupported_lexical"], m["unsupported_llm"]) == (0.5, 0.0, 0.5)
    assert "qa" not in json.loads((tmp_path / "run" / "bm25" / "metrics.json").read_text())  # no gold
    # A rerun pays nothing: answers and verdicts are on file.
    run_eval(replace(cfg, grounding="llm"), out=tmp_path / "run", llm=llm, progress=False, cache=cache)
    assert llm.calls == 3
    assert "unsupported_llm" in (tmp_path / "run" / "report.md").read_text()
