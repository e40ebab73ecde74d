"""Listwise/pointwise labelling with a scripted fake LLM: caching, resume, dry-run estimate."""
import json
import re

import pytest

from rag.corpus import Corpus
from rag.llm_cache import LLMCache, cache_key
from rag.records import Candidate, CandidateList, Passage, read_jsonl
from retriever_training.llm_rank import rank_candidates
from retriever_training.ranking import LLMRankConfig
from retriever_training.rank_chat import rank_with_chat, yes_no_score
from tests.fakes import FakeChatClient

CORPUS = Corpus("toy", [Passage(f"d{i}", f"passage number {i} about topic {i}") for i in range(12)])


def lists(n_queries=4, depth=12):
    return [CandidateList(qid=f"q{j}", query=f"query {j}", retriever="bm25",
                          candidates=[Candidate(f"d{i}", 1.0 / (i + 1), i + 1) for i in range(depth)])
            for j in range(n_queries)]


def reverse_responder(messages):
    """Ranks a window in reverse input order: '[n] > ... > [1]'."""
    n = int(re.search(r"provide you with (\d+) passages", messages[1]["content"]).group(1))
    return " > ".join(f"[{i}]" for i in range(n, 0, -1))


def test_cache_key_is_stable_and_sensitive():
    msgs = [{"role": "user", "content": "x"}]
    k = cache_key("m", "p", 1, msgs, {"temperature": 0})
    assert k == cache_key("m", "p", 1, [{"content": "x", "role": "user"}], {"temperature": 0})
    assert k != cache_key("m2", "p", 1, msgs, {"temperature": 0})
    assert k != cache_key("m", "p", 2, msgs, {"temperature": 0})
    assert k != cache_key("m", "p", 1, msgs, {"temperature": 0.5})
    assert k != cache_key("m", "p2", 1, msgs, {"temperature": 0})


def test_listwise_reverses_with_windows_and_dry_run_matches_calls(tmp_path):
    cfg = LLMRankConfig(mode="listwise", max_candidates=12, window=4, step=2, concurrency=2)
    cache = LLMCache(tmp_path / "c.sqlite")
    dry = rank_with_chat(lists(), CORPUS, cfg, tmp_path / "r.jsonl", cache, dry_run=True)
    client = FakeChatClient(reverse_responder)
    led = rank_with_chat(lists(), CORPUS, cfg, tmp_path / "r.jsonl", cache, client=client, progress=False)
    assert dry.calls == led.calls == len(client.requests) == 4 * 5  # 5 windows of 4 over 12, step 2
    assert dry.prompt_tokens > 0 and not (tmp_path / "r.jsonl").read_text() == ""
    recs = list(read_jsonl(tmp_path / "r.jsonl"))
    assert len(recs) == 4 and all(sorted(r["ranked_docids"]) == sorted(r["docids_in"]) for r in recs)
    assert recs[0]["n_repairs"] == 0 and recs[0]["n_calls"] == 5
    # Bubbling from the back moves the last candidate to the front.
    assert recs[0]["ranked_docids"][0] == "d11"


def test_resume_after_crash_makes_no_duplicate_calls(tmp_path):
    cfg = LLMRankConfig(mode="listwise", max_candidates=6, window=6, step=3, concurrency=1)
    out = tmp_path / "rankings.jsonl"
    cache = LLMCache(tmp_path / "cache.sqlite")
    calls = {"n": 0}

    def crashing(messages):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return reverse_responder(messages)

    first = FakeChatClient(crashing)
    with pytest.raises(RuntimeError):
        rank_with_chat(lists(5, 6), CORPUS, cfg, out, cache, client=first, progress=False)
    assert len(list(read_jsonl(out))) == 2  # the two queries before the crash were kept
    answered_before = len(first.requests) - 1  # the crashed request got no answer
    client = FakeChatClient(reverse_responder)
    done = {r["qid"] for r in read_jsonl(out)}
    todo = [c for c in lists(5, 6) if c.qid not in done]
    rank_with_chat(todo, CORPUS, cfg, out, LLMCache(tmp_path / "cache.sqlite"), client=client, progress=False)
    # Every distinct prompt is answered exactly once over both runs: only the crashed one is re-asked.
    assert answered_before + len(client.requests) == 5
    assert client.requests[0]["messages"] == first.requests[2]["messages"]
    assert sorted(r["qid"] for r in read_jsonl(out)) == [f"q{i}" for i in range(5)]
    # A full re-run through the stage entry point is free: everything is done.
    led = rank_candidates(lists(5, 6), CORPUS, cfg, out, cache=LLMCache(tmp_path / "cache.sqlite"), progress=False)
    assert led.calls == 0 and led.extra["already_done"] == 5


def test_cache_makes_rerun_free(tmp_path):
    cfg = LLMRankConfig(mode="listwise", max_candidates=6, window=6, step=3)
    cache = LLMCache(tmp_path / "c.sqlite")
    c1 = FakeChatClient(reverse_responder)
    rank_with_chat(lists(2, 6), CORPUS, cfg, tmp_path / "a.jsonl", cache, client=c1, progress=False)
    c2 = FakeChatClient(reverse_responder)
    led = rank_with_chat(lists(2, 6), CORPUS, cfg, tmp_path / "b.jsonl", cache, client=c2, progress=False)
    assert len(c2.requests) == 0 and led.cache_hits == 2 and led.calls == 0


def test_malformed_listwise_answers_are_repaired_and_counted(tmp_path):
    cfg = LLMRankConfig(mode="listwise", max_candidates=4, window=4, step=2)
    client = FakeChatClient(lambda m: "Sorry, I can't.")
    rank_with_chat(lists(1, 4), CORPUS, cfg, tmp_path / "r.jsonl", LLMCache(tmp_path / "c.sqlite"),
                   client=client, progress=False)
    rec = next(read_jsonl(tmp_path / "r.jsonl"))
    assert rec["ranked_docids"] == rec["docids_in"] and rec["n_repairs"] == 4


def test_yes_no_score():
    assert yes_no_score({"top_logprobs": {"Yes": -0.1, "No": -2.5}})[0] == pytest.approx(2.4)
    assert yes_no_score({"top_logprobs": {" no": -0.2}})[0] == pytest.approx(-20.0 + 0.2)
    assert yes_no_score({"text": "Yes."}) == (1.0, True)
    assert yes_no_score({"text": "maybe"}) == (0.0, False)


def test_pointwise_orders_by_yes_logprob(tmp_path):
    def responder(messages):
        return "Yes" if "number 3 " in messages[1]["content"] else "No"

    cfg = LLMRankConfig(mode="pointwise", max_candidates=5)
    rank_with_chat(lists(1, 5), CORPUS, cfg, tmp_path / "r.jsonl", LLMCache(tmp_path / "c.sqlite"),
                   client=FakeChatClient(responder), progress=False)
    rec = next(read_jsonl(tmp_path / "r.jsonl"))
    assert rec["ranked_docids"][0] == "d3" and rec["scores"][0] == 1.0


def test_an_empty_cache_passed_in_is_the_one_used(tmp_path, monkeypatch):
    """An empty LLMCache is falsy (len 0): it must still be used, not swapped for the default one."""
    cfg = LLMRankConfig(mode="listwise", max_candidates=4, window=4, step=2)
    mine = LLMCache(tmp_path / "mine.sqlite")
    import retriever_training.rank_chat as rank_chat

    seen = {}
    real = rank_chat.rank_with_chat

    def spy(todo, corpus, cfg, out_path, cache, *a, **kw):
        seen["cache"] = cache
        return real(todo, corpus, cfg, out_path, cache, client=FakeChatClient(reverse_responder), progress=False)

    monkeypatch.setattr(rank_chat, "rank_with_chat", spy)
    rank_candidates(lists(1, 4), CORPUS, cfg, tmp_path / "r.jsonl", cache=mine, progress=False)
    assert seen["cache"] is mine and len(mine) == 1


def test_an_endpoint_with_the_default_labelling_is_told_how_to_let_it_rank(monkeypatch):
    from retriever_training.label import ranker_llm_note
    from retriever_training.recipe import SECTIONS

    def cfgs(**rank):
        return {**{k: cls() for k, cls in SECTIONS.items()}, "llm_rank": SECTIONS["llm_rank"](**rank)}

    monkeypatch.delenv("DISTILRAG_LLM_ENDPOINT", raising=False)
    assert ranker_llm_note(cfgs()) is None  # the embedded model does both
    monkeypatch.setenv("DISTILRAG_LLM_ENDPOINT", "http://llm.example:8000/v1")
    note = ranker_llm_note(cfgs())
    assert note and "query likelihood" in note and "--llm_rank.mode=listwise" in note
    assert ranker_llm_note(cfgs(mode="listwise")) is None  # the endpoint ranks
    assert ranker_llm_note(cfgs(ql_backend="http", endpoints=("http://farm:8000/v1",))) is None  # a farm scores
