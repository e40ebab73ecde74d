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


def test_lexical_check_reads_stems_numbers_and_words_about_the_sources():
    kicker = "Brandon McManus kicks field goals for Denver."
    q = "Who was the kicker for Denver?"
    assert lexical_support("McManus kicked it, according to [1].", [kicker], q).supported is True
    assert lexical_support("McManus kicked it in 1927 [1].", [kicker], q).supported is False  # the year is not there
    assert lexical_support("The capital moved in 1928 [1].", [MOVED], QUESTION).reason == \
        "no cited passage contains ['1928']"  # digits match exactly, they are not stemmed


def test_citation_is_repointed_only_when_another_passage_holds_the_answer():
    from rag.grounding import repair_citations, supporting_passage

    other = "Perth is the capital of Western Australia."
    passages = [STATES, other, MOVED, "Oxygen has atomic number 8."]
    assert repair_citations("Canberra is the capital [2].", passages, QUESTION) == "Canberra is the capital [1]."
    assert repair_citations("Canberra [2][4].", passages, QUESTION) == "Canberra [1]."
    # A cited passage holding it, no passage holding it, no citation, an abstention: unchanged.
    for answer in ("Canberra [3].", "Sydney [2].", "Canberra.", "I don't know based on the provided documents. [2]"):
        assert repair_citations(answer, passages, QUESTION) == answer
    assert repair_citations("Canberra [9].", passages, QUESTION) == "Canberra [9]."  # no such source: not a citation
    assert supporting_passage("Perth [1]", passages, QUESTION) == 2


def test_an_answer_mostly_in_no_passage_is_withheld():
    from rag.grounding import WITHHOLD_BELOW, coverage, shown_answer
    from rag.prompts import NO_ANSWER

    made_up = "Kenya Airways, founded in 1963, flies from Nairobi [1]."  # its own words: 1 of 5 in [2]
    passages = [STATES, "Nairobi is the capital of Kenya."]
    assert coverage(made_up, passages, "What is Kenya's national airline?") == pytest.approx(1 / 5)
    assert shown_answer(made_up, passages, "What is Kenya's national airline?") == NO_ANSWER
    half = "Canberra, founded in 1913 [1]."  # canberra, founded: 2 of its 3 own words
    assert coverage(half, ["Canberra was founded as the capital."], QUESTION) == pytest.approx(2 / 3)
    assert WITHHOLD_BELOW <= 2 / 3  # mostly there: shown (the lexical check still calls it unsupported)
    assert shown_answer(half, ["Canberra was founded as the capital."], QUESTION) == half
    assert shown_answer(NO_ANSWER, passages, QUESTION) == NO_ANSWER
    # "Yes" affirms the question's words: nothing of its own to find, so it is shown as given.
    assert shown_answer("Yes [1].", ["The harbour is busy."], "Is the harbour busy?") == "Yes [1]."
    assert shown_answer("Yes, in 1963 [1].", ["The harbour is busy."], "Is the harbour busy?") == NO_ANSWER


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
    assert last["cap"]["checks"] == {"abstained": 0.0, "withheld": 0.0, "citation_repaired": 0.0,
                                     "unsupported_lexical": 0.0, "unsupported_llm": 1.0}
    assert last["ox"]["checks"] == {"abstained": 1.0, "withheld": 0.0, "citation_repaired": 0.0,
                                    "unsupported_lexical": 0.0, "unsupported_llm": 0.0}
    m = json.loads((tmp_path / "run" / "bm25" / "metrics.json").read_text())["answers"]
    assert (m["abstained"], m["unsupported_lexical"], m["unsupported_llm"]) == (0.5, 0.0, 0.5)
    assert "qa" not in json.loads((tmp_path / "run" / "bm25" / "metrics.json").read_text())  # no gold
    # A rerun pays nothing: answers and verdicts are on file.
    run_eval(replace(cfg, grounding="llm"), out=tmp_path / "run", llm=llm, progress=False, cache=cache)
    assert llm.calls == 3
    assert "unsupported_llm" in (tmp_path / "run" / "report.md").read_text()


def test_harness_repoints_a_wrong_citation_and_brings_older_records_to_the_rule(tmp_path, monkeypatch):
    """The reader cites the wrong passage: the record cites the one holding the answer, keeps the
    reader's text, and scores both; the cache keeps the reader's text; an older record is redone."""
    from eval.run import EvalConfig, run_eval
    from rag.records import append_jsonl, read_jsonl, write_jsonl

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    perth = "Perth is the capital of Western Australia."
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "au#0", "title": "Australia", "text": STATES},
                                            {"_id": "wa#0", "title": "Perth", "text": perth}])
    write_jsonl(tmp_path / "q.jsonl", [{"qid": "cap", "query": QUESTION, "answers": ["Canberra"]}])

    def cites_perth(prompt: str) -> str:  # the wrong source, whatever its rank
        n = next(line[1] for line in prompt.splitlines() if line.startswith("[") and "Perth" in line)
        return f"Canberra is the capital [{n}]."

    cfg = EvalConfig(corpus=str(tmp_path / "corpus.jsonl"), split="", queries=str(tmp_path / "q.jsonl"),
                     retrievers=("bm25",), top_k=2, depth=2)
    cache, llm = LLMCache(tmp_path / "c.sqlite"), scripted_llm(cites_perth)
    run_eval(cfg, out=tmp_path / "run", llm=llm, progress=False, cache=cache)
    out = tmp_path / "run" / "bm25" / "answers.jsonl"
    rec = list(read_jsonl(out))[-1]
    assert rec["cited_docids"] == ["au#0"] and rec["model_answer"] != rec["answer"]
    assert rec["model_answer"] == cites_perth(llm.prompts[0]) == cache.get(rec["answer_key"])["text"]
    assert (rec["qa"]["citation_precision"], rec["qa"]["citation_precision_model"]) == (1.0, 0.0)
    assert rec["checks"]["citation_repaired"] == 1.0
    # A record an older harness wrote: the reader's text as the answer, no checks_version.
    old = {k: v for k, v in rec.items() if k not in ("model_answer", "checks_version", "checks", "grounding")}
    append_jsonl(out, {**old, "answer": rec["model_answer"], "cited_docids": ["wa#0"],
                       "qa": {**rec["qa"], "citation_precision": 0.0}})
    run_eval(cfg, out=tmp_path / "run", llm=llm, progress=False, cache=cache)
    redone = list(read_jsonl(out))[-1]
    assert llm.calls == 1 and {k: redone[k] for k in rec} == rec
    m = json.loads((tmp_path / "run" / "bm25" / "metrics.json").read_text())
    assert m["qa"]["citation_precision"] == 1.0 and m["qa"]["citation_precision_model"] == 0.0


def test_harness_withholds_a_made_up_answer_and_keeps_what_the_llm_said(tmp_path, monkeypatch):
    from eval.run import EvalConfig, run_eval
    from rag.prompts import NO_ANSWER
    from rag.records import read_jsonl, write_jsonl

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "au#0", "title": "Australia", "text": STATES}])
    write_jsonl(tmp_path / "q.jsonl", [{"qid": "cap", "query": QUESTION, "answers": ["Canberra"]}])
    said = "Sydney, founded by Captain Cook in 1788 [1]."
    cfg = EvalConfig(corpus=str(tmp_path / "corpus.jsonl"), split="", queries=str(tmp_path / "q.jsonl"),
                     retrievers=("bm25",), top_k=1, depth=1)
    run_eval(cfg, out=tmp_path / "run", llm=scripted_llm([said]), progress=False, cache=LLMCache(tmp_path / "c"))
    rec = list(read_jsonl(tmp_path / "run" / "bm25" / "answers.jsonl"))[-1]
    assert (rec["answer"], rec["model_answer"], rec["no_answer"]) == (NO_ANSWER, said, True)
    assert rec["checks"]["withheld"] == rec["checks"]["abstained"] == 1.0
    assert rec["checks"]["citation_repaired"] == 0.0 and rec["cited_docids"] == []
    assert rec["qa"]["answer_contains_ref_model"] == 0.0
