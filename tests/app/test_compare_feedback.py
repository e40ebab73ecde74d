"""Compare mode (with and without a distilled model) and thumbs up/down feedback logging."""
from __future__ import annotations

import json

from tests.app.helpers import ask, new_app, texts

QUESTION = "Which team represented the AFC at Super Bowl 50?"


def test_compare_without_distilled_says_so_and_still_compares(corpus_dir, app_home, fake_llm):
    at = new_app()
    at.toggle(key="compare").set_value(True).run()
    assert "No distilled retriever exists yet" in texts(at.sidebar.warning)
    assert at.selectbox(key="compare_left").value == "base"
    assert at.selectbox(key="compare_right").value == "bm25"
    ask(at, QUESTION)
    results = at.session_state["turns"][0]["results"]
    assert [r["retriever"] for r in results] == ["base", "bm25"]
    assert all(r["error"] is None and r["cited"] == [1] for r in results)
    assert len(at.chat_message[1].columns) == 2


def test_compare_base_vs_distilled_side_by_side(corpus_dir, app_home, fake_llm, published_distilled):
    at = new_app()
    at.toggle(key="compare").set_value(True).run()
    assert not at.sidebar.warning
    assert (at.selectbox(key="compare_left").value, at.selectbox(key="compare_right").value) == ("base", "distilled")
    ask(at, QUESTION)
    left, right = at.session_state["turns"][0]["results"]
    assert (left["retriever"], right["retriever"]) == ("base", "distilled")
    assert left["error"] is None and right["error"] is None
    cols = at.chat_message[1].columns
    assert [c.markdown[0].value for c in cols] == ["#### base", "#### distilled"]
    # Each side shows its own retrieved passages.
    assert all(any("broncos.txt#0" in e.label for e in c.expander) for c in cols)
    # The distilled side has its own index, built from the distilled model's files.
    assert list((app_home / "indexes").glob(f"{corpus_dir.name}*/distilled/manifest.json"))


def test_feedback_is_appended_as_jsonl_usable_as_query_pool(corpus_dir, app_home, fake_llm):
    from rag.questions import read_questions as read_query_file

    at = new_app()
    ask(at, QUESTION)
    log = app_home / "feedback.jsonl"
    assert not log.exists()  # nothing is logged until the user rates
    at.feedback[0].set_value(1).run()   # thumbs up
    at.feedback[0].set_value(0).run()   # changed their mind: thumbs down
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [d["rating"] for d in lines] == [1, -1]
    d = lines[0]
    assert d["question"] == QUESTION and d["retriever"] == "base"
    assert d["answer"].startswith("The Denver Broncos") and d["docids"][0].startswith("broncos.txt#")
    assert d["corpus"] == str(corpus_dir) and d["timestamp"].endswith("Z") and d["schema_version"] == 1
    assert "2 logged" not in texts(at.sidebar.caption)  # the summary counts up and down separately
    assert "1 👍 / 1 👎" in texts(at.sidebar.caption)
    # The retrainer reads the log as an extra query pool (a question rated twice is one query).
    assert [q.query for q in read_query_file(log)] == [QUESTION]


def test_feedback_in_compare_mode_records_each_retriever(corpus_dir, app_home, fake_llm):
    at = new_app()
    at.toggle(key="compare").set_value(True).run()
    ask(at, QUESTION)
    at.feedback[1].set_value(1).run()
    [d] = [json.loads(x) for x in (app_home / "feedback.jsonl").read_text().splitlines()]
    assert d["retriever"] == "bm25" and d["rating"] == 1
