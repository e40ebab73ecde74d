"""The answer cache: its key, one call per distinct prompt across retrievers, a free rerun, the dry run."""
import json
from dataclasses import replace

import pytest

from eval.answer_cache import answer_key, answer_model_id, seconds_per_token
from eval.run import EvalConfig, run_eval
from rag.llm import LLMConfig
from rag.llm_cache import LLMCache
from rag.records import read_jsonl, write_jsonl
from tests.fakes import scripted_llm

P = [{"docid": "a#0", "title": "A", "text": "Alpha text."}, {"docid": "b#0", "title": "B", "text": "Beta text."}]
PARAMS = {"temperature": 0.0, "max_tokens": 384, "n_ctx": 4096}


def test_key_is_sensitive_to_passage_order_model_prompt_version_and_params():
    k = answer_key("m", "Q?", P, PARAMS)
    assert k == answer_key("m", " Q? ", [dict(p) for p in P], dict(PARAMS))  # same prompt, same key
    assert k != answer_key("m", "Q?", P[::-1], PARAMS)            # passage order
    assert k != answer_key("m2", "Q?", P, PARAMS)                 # model
    assert k != answer_key("m", "Q?", P, PARAMS, prompt_version=99)   # prompt version
    assert k != answer_key("m", "Q?", P, PARAMS, prompt_id="other")
    assert k != answer_key("m", "Q?", P, {**PARAMS, "temperature": 0.7})
    assert k != answer_key("m", "Other?", P, PARAMS)
    assert k != answer_key("m", "Q?", [P[0], {**P[1], "text": "Beta text!"}], PARAMS)


def test_model_id_names_the_weights_or_the_endpoint():
    from rag.models import DEFAULT_LLM

    assert DEFAULT_LLM.sha256[:12] in answer_model_id(LLMConfig())
    remote = answer_model_id(LLMConfig(endpoint="https://user:pw@api.example/v1?k=1", model="gpt-x"))
    assert remote == "https://api.example/v1|gpt-x"  # credentials and query strings never in a key
    assert answer_model_id(LLMConfig(endpoint="https://api.example/v1", model="gpt-y")) != remote


PASSAGES = [("sb#0", "Super Bowl 50", "The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50."),
            ("sb#1", "Super Bowl 50", "Super Bowl 50 was played at Levi's Stadium in Santa Clara."),
            ("ox#0", "Oxygen", "Oxygen is a chemical element with atomic number 8."),
            ("ch#0", "Chloroplast", "Chloroplasts conduct photosynthesis in plant cells.")]
QUERIES = [("q1", "Which team won Super Bowl 50?", ["Denver Broncos"]),
           ("q2", "Where was Super Bowl 50 played?", ["Levi's Stadium"]),
           ("q3", "What is the atomic number of oxygen?", ["8"]),
           ("q4", "What do chloroplasts conduct?", ["photosynthesis"])]


@pytest.fixture
def two_retrievers(tmp_path, monkeypatch):
    """Retrievers "a" and "b": the same top-2 for q1-q3, another order for q4."""
    from llama_index.core.schema import NodeWithScore, TextNode

    import eval.dry_run
    import eval.run

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": d, "title": t, "text": x} for d, t, x in PASSAGES])
    write_jsonl(tmp_path / "q.jsonl", [{"qid": q, "query": t, "answers": a} for q, t, a in QUERIES])
    nodes = {d: NodeWithScore(node=TextNode(id_=d, text=x, metadata={"title": t}), score=1.0)
             for d, t, x in PASSAGES}
    top = {"q1": ["sb#0", "sb#1"], "q2": ["sb#1", "sb#0"], "q3": ["ox#0", "ch#0"], "q4": ["ch#0", "ox#0"]}
    by_text = {t: q for q, t, _ in QUERIES}

    def build(spec, corpus, depth):
        def retrieve(question, qid=None):
            ids = top[by_text[question]]
            return [nodes[d] for d in (ids[::-1] if spec == "b" and by_text[question] == "q4" else ids)]
        return retrieve

    for mod in (eval.run, eval.dry_run):
        monkeypatch.setattr(mod, "retrieval_function", build)
        monkeypatch.setattr(mod, "spec_identity", lambda spec, corpus=None: {})
    cfg = EvalConfig(corpus=str(tmp_path / "corpus.jsonl"), split="", queries=str(tmp_path / "q.jsonl"),
                     retrievers=("a", "b"), top_k=2, depth=2)
    return tmp_path, cfg


def answer(prompt):
    return "The Denver Broncos [1]." if "Which team" in prompt else "I don't know based on the provided documents."


def test_equal_prompts_are_paid_once_across_retrievers_and_a_rerun_pays_none(two_retrievers):
    from eval.dry_run import dry_run

    tmp, cfg = two_retrievers
    cache = LLMCache(tmp / "cache.sqlite")
    before = dry_run(cfg, out=str(tmp / "run1"), cache=cache, runs_root=tmp / "none")
    assert (before.needed, before.cached, before.shared, before.to_pay) == (8, 0, 3, 5)
    assert before.prompt_tokens > 0 and "default" in before.rate_source
    llm = scripted_llm(answer)
    run_eval(cfg, out=tmp / "run1", llm=llm, progress=False, cache=cache)
    assert llm.calls == 5  # 4 prompts of a, plus b's differently ordered q4
    recs_b = {r["qid"]: r for r in read_jsonl(tmp / "run1" / "b" / "answers.jsonl")}
    assert [q for q, r in sorted(recs_b.items()) if r.get("cached")] == ["q1", "q2", "q3"]
    assert recs_b["q1"]["cited_docids"] == ["sb#0"] and recs_b["q1"]["qa"]["answer_contains_ref"] == 1.0
    assert recs_b["q1"]["timings"]["total_s"] >= recs_b["q1"]["timings"]["retrieve_s"]
    m = json.loads((tmp / "run1" / "b" / "metrics.json").read_text())
    assert m["answers"]["n_cached"] == 3
    # A fresh run directory (a rerun from scratch): every prompt is in the cache.
    after = dry_run(cfg, out=str(tmp / "run2"), cache=cache, runs_root=tmp / "runs")
    assert (after.cached, after.shared, after.to_pay, after.prompt_tokens) == (8, 0, 0, 0)
    llm2 = scripted_llm(answer)
    run_eval(cfg, out=tmp / "run2", llm=llm2, progress=False, cache=cache)
    assert llm2.calls == 0
    # --no-answer-cache pays again.
    llm3 = scripted_llm(answer)
    run_eval(replace(cfg, answer_cache=False), out=tmp / "run3", llm=llm3, progress=False, cache=cache)
    assert llm3.calls == 8


def test_dry_run_counts_answers_in_the_run_directory_and_writes_nothing(two_retrievers, capsys):
    from eval.dry_run import dry_run

    tmp, cfg = two_retrievers
    cache = LLMCache(tmp / "cache.sqlite")
    run_eval(replace(cfg, retrievers=("a",)), out=tmp / "run", llm=scripted_llm(answer), progress=False,
             cache=cache)
    r = dry_run(cfg, out=str(tmp / "run"), cache=cache, runs_root=tmp / "none")
    assert (r.in_run_dir, r.needed, r.cached, r.to_pay) == (4, 4, 3, 1)
    assert not (tmp / "run" / "b").exists()
    assert "1 distinct prompts will be paid" in "\n".join(r.lines())


def test_time_estimate_is_calibrated_from_earlier_answers(tmp_path):
    d = tmp_path / "eval" / "old" / "base"
    d.mkdir(parents=True)
    ctx = ["word " * 100]
    write_jsonl(d / "answers.jsonl", [
        {"qid": "1", "question": "q", "contexts": ctx, "timings": {"retrieve_s": 1.0, "total_s": 11.0}},
        {"qid": "2", "question": "q", "contexts": ctx, "timings": {"retrieve_s": 0.0, "total_s": 0.01},
         "cached": True},   # served from the cache: no measure of the LLM
        {"qid": "3", "question": "q", "contexts": ctx, "error": "timeout", "timings": {"total_s": 99}}])
    rate, source = seconds_per_token(tmp_path / "eval")
    tokens = int(101 * 1.35) + 70
    assert rate == pytest.approx(10.0 / tokens) and "calibrated from 1 earlier answers" in source
    assert "default" in seconds_per_token(tmp_path / "missing")[1]


def test_cli_dry_run_prints_the_prompts_to_pay_before_any_llm_work(tmp_path, monkeypatch, capsys):
    from eval.run import main

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": d, "title": t, "text": x} for d, t, x in PASSAGES])
    write_jsonl(tmp_path / "q.jsonl", [{"qid": q, "query": t, "answers": a} for q, t, a in QUERIES])
    rc = main(["--corpus", str(tmp_path / "corpus.jsonl"), "--split", "", "--queries", str(tmp_path / "q.jsonl"),
               "--retrievers", "bm25", "--top-k", "2", "--out", str(tmp_path / "run"), "--dry-run",
               "--endpoint", "http://127.0.0.1:9/v1"])  # nothing listens there: no call may be made
    out = capsys.readouterr().out
    assert rc == 0 and "4 distinct prompts will be paid" in out and "estimated LLM time" in out
    assert not (tmp_path / "run").exists()
