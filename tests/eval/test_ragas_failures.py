"""A judge that returns malformed JSON, or is too slow, yields counted failures — never NaN means.

The judge is a real `openai.AsyncOpenAI` client whose HTTP transport is scripted (httpx
MockTransport), so ragas, instructor and our accounting run exactly as with a real endpoint.
"""
import asyncio
import json

import pytest

pytest.importorskip("ragas")

from eval.ragas_eval import JudgeConfig, ajudge_records, make_judge, summarize  # noqa: E402

RECORDS = [
    {"qid": "q1", "question": "Who won Super Bowl 50?", "answer": "The Denver Broncos won [1].",
     "contexts": ["The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50."],
     "references": ["Denver Broncos"]},
    {"qid": "q2", "question": "Where was it played?", "answer": "At Levi's Stadium [1].",
     "contexts": ["The game was played at Levi's Stadium."], "references": ["Levi's Stadium"]},
]


def _completion(content: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "fake-judge",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def fake_judge(handler):
    import httpx
    import openai

    client = openai.AsyncOpenAI(base_url="http://judge.invalid/v1", api_key="none", max_retries=0,
                                http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    return client


def test_malformed_json_is_counted_as_parse_failure(tmp_path):
    requests = []

    def handler(request):
        import httpx

        requests.append(json.loads(request.content))
        return httpx.Response(200, json=_completion('{"statements": [unterminated'))

    cfg = JudgeConfig(metrics=("faithfulness", "context_recall"), max_retries=1)
    out = tmp_path / "ragas.jsonl"
    summary = asyncio.run(ajudge_records(RECORDS, out, cfg, llm=make_judge(cfg, fake_judge(handler))))
    for name in ("faithfulness", "context_recall"):
        s = summary[name]
        assert s["n"] == 2 and s["n_parse_error"] == 2 and s["n_ok"] == 0
        assert s["mean"] is None  # nothing valid to average: not NaN, not 0
    # instructor re-asked once per metric per sample (1 + 1 retry), then gave up
    assert len(requests) == 2 * 2 * 2
    assert requests[0]["response_format"] == {"type": "json_object"}
    # resumable: a second call judges nothing new
    n = len(requests)
    asyncio.run(ajudge_records(RECORDS, out, cfg, llm=make_judge(cfg, fake_judge(handler))))
    assert len(requests) == n


def test_timeouts_and_valid_scores_are_kept_apart(tmp_path):
    async def handler(request):
        import httpx

        prompt = json.loads(request.content)["messages"][-1]["content"]
        if "Levi" in prompt:  # the second sample hangs
            await asyncio.sleep(5)
        # A well-formed context-recall verdict: the one reference statement is attributed.
        return httpx.Response(200, json=_completion(json.dumps({"classifications": [
            {"statement": "Denver Broncos", "reason": "in context", "attributed": 1}]})))

    cfg = JudgeConfig(metrics=("context_recall",), timeout_s=0.5)
    summary = asyncio.run(ajudge_records(RECORDS, tmp_path / "r.jsonl", cfg,
                                         llm=make_judge(cfg, fake_judge(handler))))
    s = summary["context_recall"]
    assert (s["n_ok"], s["n_timeout"], s["mean"]) == (1, 1, 1.0)


def test_summarize_counts_nan_separately():
    judged = [{"qid": "a", "metrics": {"m": {"value": 0.5, "status": "ok", "seconds": 1}}},
              {"qid": "b", "metrics": {"m": {"value": None, "status": "nan", "seconds": 1}}},
              {"qid": "c", "metrics": {"m": {"value": None, "status": "error", "seconds": 1}}}]
    s = summarize(judged)["m"]
    assert (s["mean"], s["n_ok"], s["n_nan"], s["n_error"], s["n"]) == (0.5, 1, 1, 1, 3)


def test_nvidia_ratings_are_scaled_and_a_rating_off_the_scale_is_nan_not_zero(tmp_path):
    """answer_accuracy's two judges rate 0/2/4, the other two metrics' 0/1/2; both scale to 0..1.
    A judge that answers off the scale (3 for accuracy) is a counted NaN, never averaged."""
    def handler(request):
        import httpx

        prompt = json.loads(request.content)["messages"][-1]["content"]
        if "User Answer" in prompt:  # answer_accuracy
            rating = 3 if "Levi" in prompt else 4
        else:
            rating = 1 if "Levi" in prompt else 2
        return httpx.Response(200, json=_completion(json.dumps({"rating": rating})))

    cfg = JudgeConfig(metrics=("answer_accuracy", "context_relevance", "response_groundedness"))
    out = tmp_path / "nv.jsonl"
    summary = asyncio.run(ajudge_records(RECORDS, out, cfg, llm=make_judge(cfg, fake_judge(handler))))
    m = {r["qid"]: r["metrics"] for r in map(json.loads, out.read_text().splitlines())}
    assert m["q1"]["answer_accuracy"]["value"] == 1.0
    assert m["q2"]["answer_accuracy"]["status"] == "nan" and m["q2"]["answer_accuracy"]["value"] is None
    assert (summary["answer_accuracy"]["mean"], summary["answer_accuracy"]["n_nan"]) == (1.0, 1)
    for name in ("context_relevance", "response_groundedness"):
        assert (m["q1"][name]["value"], m["q2"][name]["value"]) == (1.0, 0.5)
        assert summary[name]["mean"] == 0.75 and summary[name]["n_ok"] == 2


def test_string_metrics_need_no_judge_and_score_the_reference(tmp_path, monkeypatch):
    import eval.ragas_eval as ragas_eval

    monkeypatch.setattr(ragas_eval, "make_judge", lambda *a, **k: pytest.fail("a judge was started"))
    records = RECORDS + [{"qid": "q3", "question": "Who lost?", "answer": "I don't know.", "contexts": ["x"],
                          "references": ["Carolina Panthers"]}]
    cfg = JudgeConfig(metrics=("string_presence", "non_llm_string_similarity", "rouge_score"))
    out = tmp_path / "s.jsonl"
    asyncio.run(ajudge_records(records, out, cfg))
    m = {r["qid"]: {k: v["value"] for k, v in r["metrics"].items()} for r in map(json.loads, out.read_text().splitlines())}
    assert m["q1"]["string_presence"] == 1.0 and m["q2"]["string_presence"] == 1.0
    assert m["q3"]["string_presence"] == 0.0 and m["q3"]["rouge_score"] == 0.0
    assert m["q1"]["rouge_score"] > m["q3"]["rouge_score"]
    assert 0.0 < m["q3"]["non_llm_string_similarity"] < m["q1"]["non_llm_string_similarity"] <= 1.0


def test_a_metric_added_on_a_rerun_is_judged_for_questions_already_judged(tmp_path):
    """Resume is per question and metric: the rerun pays only the new metric, and the merged
    judgements hold both for every question."""
    from eval.ragas_eval import read_judgements

    requests = []

    def handler(request):
        import httpx

        requests.append(json.loads(request.content))
        return httpx.Response(200, json=_completion('{"statements": [unterminated'))

    out = tmp_path / "ragas.jsonl"
    first = JudgeConfig(metrics=("string_presence",))
    asyncio.run(ajudge_records(RECORDS, out, first))
    assert requests == []  # string metrics: no judge call
    both = JudgeConfig(metrics=("string_presence", "faithfulness"), max_retries=1)
    summary = asyncio.run(ajudge_records(RECORDS, out, both, llm=make_judge(both, fake_judge(handler))))
    assert summary["faithfulness"]["n"] == 2 and summary["string_presence"]["n"] == 2  # not counted twice
    assert len(requests) == 2 * 2  # faithfulness only: 2 samples x (1 + 1 retry)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [sorted(r["metrics"]) for r in rows[2:]] == [["faithfulness"], ["faithfulness"]]
    merged = {r["qid"]: sorted(r["metrics"]) for r in read_judgements(out)}
    assert merged == {"q1": ["faithfulness", "string_presence"], "q2": ["faithfulness", "string_presence"]}
    n = len(requests)
    asyncio.run(ajudge_records(RECORDS, out, both, llm=make_judge(both, fake_judge(handler))))
    assert len(requests) == n  # nothing left to pay
