"""`distilrag eval` handed bad question files, an endpoint that echoes the key, one that is down:
one line that names the thing, no key anywhere, and a nonzero exit when the work failed."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from rag.records import write_jsonl
from tests.hostile.fake_endpoint import fake_endpoint

KEY = "sk-proj-hostileTESTkey0123456789abcdef"
PASSAGES = [("a", "The harbour is busy."), ("b", "A glacier moves slowly."), ("c", "The volcano erupted.")]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": d, "text": t} for d, t in PASSAGES])
    (tmp_path / "q.txt").write_text("Is the harbour busy?\nDoes the glacier move?\n")
    return tmp_path


def eval_argv(tiny, queries, *extra):
    return ["eval", "--corpus", str(tiny / "corpus.jsonl"), "--split", "", "--queries", str(queries),
            "--retrievers", "bm25", "--out", str(tiny / "run"), "--quiet", *extra]


def _write(path: Path, content) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# (name, make the --queries path under tmp, words the one error line must contain)
BAD_QUESTIONS = [
    ("latin-1 text", lambda t: _write(t / "q1.txt", "Qu'est-ce qu'un glacier ?\nCaf\xe9 ?\n".encode("latin-1")),
     ["q1.txt", "not UTF-8", "re-save it as UTF-8"]),
    ("latin-1 jsonl", lambda t: _write(t / "q2.jsonl", '{"qid": "1", "query": "Caf\xe9 ?"}\n'.encode("latin-1")),
     ["q2.jsonl", "not UTF-8"]),
    ("a folder", lambda t: (t / "qdir").mkdir() or t / "qdir", ["qdir", "is a folder", "give a file"]),
    ("empty text", lambda t: _write(t / "q3.txt", ""), ["q3.txt", "holds no questions"]),
    ("blank lines only", lambda t: _write(t / "q4.txt", "\n  \n\t\n"), ["q4.txt", "holds no questions"]),
    ("empty jsonl", lambda t: _write(t / "q5.jsonl", ""), ["q5.jsonl", "holds no questions"]),
    ("jsonl without query fields", lambda t: _write(t / "q6.jsonl", '{"qid": "1", "q": "x"}\n'),
     ["q6.jsonl", "holds no questions"]),
    ("duplicate qid", lambda t: _write(t / "q7.jsonl", '{"qid": "7", "query": "a?"}\n{"qid": "8", "query": "b?"}\n'
                                                         '{"qid": "7", "query": "c?"}\n'),
     ["q7.jsonl", "qid '7' appears twice", "records 1 and 3"]),
    ("binary", lambda t: _write(t / "q8.txt", b"%PDF-1.4\x00\x01\x02"), ["q8.txt", "binary"]),
    ("a JSON array", lambda t: _write(t / "q9.json", '[{"query": "a?"}]'), ["q9.json", "JSONL"]),
    ("missing", lambda t: t / "nope.txt", ["nope.txt", "not found"]),
    ("bad jsonl line", lambda t: _write(t / "q10.jsonl", '{"query": "a?"}\n{"query": \n{"query": "b?"}\n'),
     ["q10.jsonl:2", "not valid JSON"]),
]


@pytest.mark.parametrize("name,make,words", BAD_QUESTIONS, ids=[b[0] for b in BAD_QUESTIONS])
def test_a_bad_questions_file_is_one_error_line(tiny, capsys, name, make, words):
    from app.cli import main

    rc = main(eval_argv(tiny, make(tiny)))
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in err + out


def test_text_question_ids_follow_the_text_not_the_line(tiny):
    from eval.run import EvalConfig, load_questions

    def ids(text):
        (tiny / "q.txt").write_text(text)
        qs, _ = load_questions(EvalConfig(corpus=str(tiny / "corpus.jsonl"), split="", queries=str(tiny / "q.txt")))
        return {q.query: q.qid for q in qs}

    before = ids("Is the harbour busy?\nDoes the glacier move?\n")
    after = ids("What erupted?\nIs the harbour busy?\nDoes the glacier move?\n")
    assert {k: after[k] for k in before} == before and len(set(after.values())) == 3


def test_a_changed_questions_file_does_not_resume_the_old_run(tiny, capsys):
    from eval.run import EvalConfig, run_eval
    from tests.fakes import scripted_llm

    cfg = EvalConfig(corpus=str(tiny / "corpus.jsonl"), split="", queries=str(tiny / "q.txt"),
                     retrievers=("bm25",), top_k=1, depth=3)
    run_eval(cfg, out=tiny / "run", llm=scripted_llm(["Yes [1]."]), progress=False, report=False)
    (tiny / "q.txt").write_text("What erupted?\nIs the harbour busy?\nDoes the glacier move?\n")
    with pytest.raises(SystemExit, match="different questions"):
        run_eval(cfg, out=tiny / "run", llm=scripted_llm(["Yes [1]."]), progress=False, report=False)
    (tiny / "q.txt").write_text("Is the harbour busy?\nDoes the glacier move?\n\nIs the harbour busy?\n")
    llm = scripted_llm(["Yes [1]."])
    run_eval(cfg, out=tiny / "run", llm=llm, progress=False, report=False)  # same questions: resumed
    assert llm.calls == 0 and "1 repeated questions are kept once" in capsys.readouterr().err


def _no_key_anywhere(tiny, out, err):
    assert KEY not in out + err
    assert KEY[8:24] not in out + err  # not even a piece of it
    for f in (tiny / "run").rglob("*"):
        if f.is_file():
            assert KEY[8:24] not in f.read_text(errors="replace"), f


def test_an_endpoint_echoing_the_key_never_gets_it_printed_or_stored(tiny, capsys, monkeypatch):
    from app.cli import main

    monkeypatch.setenv("HOSTILE_KEY", KEY)
    with fake_endpoint("401") as ep:
        rc = main(eval_argv(tiny, tiny / "q.txt", "--endpoint", ep.url, "--model", "m",
                            "--api-key-env", "HOSTILE_KEY"))
        assert ep.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # it was sent, and echoed
    out, err = capsys.readouterr()
    _no_key_anywhere(tiny, out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and ep.url in lines[0] and "$HOSTILE_KEY" in lines[0]
    assert "Traceback" not in err
    recs = [json.loads(ln) for ln in (tiny / "run" / "bm25" / "answers.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and "refused the API key" in recs[0]["error"]  # stopped at the first refusal


def test_an_unreachable_endpoint_is_one_line_naming_it(tiny, capsys, monkeypatch):
    from app.cli import main

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    s.close()  # nothing listens there now
    monkeypatch.setenv("HOSTILE_KEY", KEY)
    rc = main(eval_argv(tiny, tiny / "q.txt", "--endpoint", url, "--api-key-env", "HOSTILE_KEY"))
    out, err = capsys.readouterr()
    # the error is one line (a note before it, here that the questions have no answers, is not an error)
    lines = [ln for ln in err.splitlines() if ln.strip() and "bm25s" not in ln and not ln.startswith("note:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"error: bm25: Cannot reach {url}"), err
    assert "Traceback" not in err and "During handling" not in err


def test_every_question_failing_exits_2_with_the_reason(tiny, capsys, monkeypatch):
    """A 200 whose body is HTML streams no text: no question was answered, so the run failed."""
    from app.cli import main

    monkeypatch.setenv("HOSTILE_KEY", KEY)
    with fake_endpoint("nonjson") as ep:
        rc = main(eval_argv(tiny, tiny / "q.txt", "--endpoint", ep.url, "--api-key-env", "HOSTILE_KEY"))
    out, err = capsys.readouterr()
    assert rc == 2 and "error: every question failed for bm25" in err and "sent no answer" in err
    _no_key_anywhere(tiny, out, err)


def test_some_questions_failing_say_how_many(tiny, capsys):
    from eval.run import EvalConfig, run_eval
    from tests.fakes import scripted_llm

    def answer(prompt):
        if "glacier move" in prompt:
            raise RuntimeError(f"upstream said: Incorrect API key provided: {KEY}")
        return "Yes [1]."

    cfg = EvalConfig(corpus=str(tiny / "corpus.jsonl"), split="", queries=str(tiny / "q.txt"),
                     retrievers=("bm25",), top_k=1, depth=3, answer_cache=False)
    run_eval(cfg, out=tiny / "run", llm=scripted_llm(answer), progress=False, report=False)
    out, err = capsys.readouterr()
    assert "warning: bm25: 1 of 2 questions failed" in err and "run the command again" in err
    _no_key_anywhere(tiny, out, err)
    m = json.loads((tiny / "run" / "bm25" / "metrics.json").read_text())
    assert m["n_errors"] == 1 and "RuntimeError" in m["last_error"]
