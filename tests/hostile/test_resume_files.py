"""What a kill -9, a full disk or a stray `> file` leaves behind, and what resuming must do with it:
torn JSONL tails, a ledger of interrupted passes, an empty or damaged LLM cache."""
from __future__ import annotations

import json
import os
import re
import sqlite3

import pytest

from rag.corpus import Corpus
from rag.errors import UserError
from rag.llm_cache import LLMCache, LLMCacheError
from rag.records import (Candidate, CandidateList, Passage, append_jsonl, read_jsonl,
                         write_jsonl)
from tests.fakes import FakeChatClient

RECS = [{"qid": f"q{i}", "v": i} for i in range(3)]


# -------------------------------------------------------------- torn JSONL tails
@pytest.mark.parametrize("tail", [b'{"qid": "q3", "v"', b"{", b"\x00\x00\x00", b'{"qid": "caf\xc3'],
                         ids=["half a record", "one brace", "NUL bytes", "half a UTF-8 character"])
def test_a_torn_last_line_is_cut_before_the_next_append(tmp_path, capsys, tail):
    path = tmp_path / "rankings.jsonl"
    write_jsonl(path, RECS)
    with open(path, "ab") as f:
        f.write(tail)
    assert [r["qid"] for r in read_jsonl(path)] == ["q0", "q1", "q2"]  # the reader skips it
    append_jsonl(path, {"qid": "q3", "v": 3})
    err = capsys.readouterr().err
    assert "warning:" in err and str(path) in err and "interrupted write" in err
    lines = path.read_text().splitlines()
    assert [json.loads(ln)["qid"] for ln in lines] == ["q0", "q1", "q2", "q3"]  # nothing glued on


def test_a_whole_last_record_missing_only_its_newline_is_kept(tmp_path, capsys):
    """The reader counts it as done, so cutting it would lose it for good."""
    path = tmp_path / "r.jsonl"
    path.write_text('{"qid": "q0"}\n{"qid": "q1"}')
    assert len(list(read_jsonl(path))) == 2
    append_jsonl(path, {"qid": "q2"})
    assert [r["qid"] for r in read_jsonl(path)] == ["q0", "q1", "q2"] and capsys.readouterr().err == ""


def test_an_intact_file_is_appended_to_without_a_word(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    write_jsonl(path, RECS)
    append_jsonl(path, {"qid": "q3"})
    assert capsys.readouterr().err == "" and len(list(read_jsonl(path))) == 4


@pytest.mark.parametrize("content,message", [
    (b'{"qid": "q0"}\n{"qid": \n{"qid": "q2"}\n', r"r\.jsonl:2: not valid JSON"),
    (b'{"qid": "q0"}\n[1, 2]\n', r"r\.jsonl:2: a JSON list, not an object"),
    ('{"qid": "caf\xe9"}\n'.encode("latin-1"), r"r\.jsonl:1 is not UTF-8 text \(byte \d+\); re-save the file as UTF-8"),
], ids=["bad middle line", "not an object", "latin-1"])
def test_unreadable_records_are_one_user_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        list(read_jsonl(path))


def test_damaged_gzip_records_are_a_user_error(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    write_jsonl(path, RECS * 50)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match="damaged gzip"):
        list(read_jsonl(path))


def test_eval_answers_with_a_torn_tail_resume_cleanly(tmp_path, capsys):
    from eval.run import EvalConfig, run_eval
    from tests.fakes import scripted_llm

    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "The harbour is busy."},
                                            {"_id": "b", "text": "A glacier moves slowly."}])
    (tmp_path / "q.txt").write_text("Is the harbour busy?\nDoes the glacier move?\n")
    cfg = EvalConfig(corpus=str(tmp_path / "corpus.jsonl"), split="", queries=str(tmp_path / "q.txt"),
                     retrievers=("bm25",), top_k=1, depth=2, answer_cache=False)
    run_eval(cfg, out=tmp_path / "run", llm=scripted_llm(["Yes [1]."]), progress=False, report=False)
    answers = tmp_path / "run" / "bm25" / "answers.jsonl"
    data = answers.read_bytes()
    answers.write_bytes(data[:len(data) - 25])  # the last record's write was cut short
    llm = scripted_llm(["Yes [1]."])
    run_eval(cfg, out=tmp_path / "run", llm=llm, progress=False, report=False)
    assert llm.calls == 1 and "interrupted write" in capsys.readouterr().err
    assert [json.loads(ln)["answer"] for ln in answers.read_text().splitlines()] == ["Yes [1].", "Yes [1]."]


# -------------------------------------------------------------- the labelling ledger
CORPUS = Corpus("toy", [Passage(f"d{i}", f"passage number {i}") for i in range(6)])


def _lists(n):
    return [CandidateList(qid=f"q{j}", query=f"query {j}", retriever="bm25",
                          candidates=[Candidate(f"d{i}", 1.0, i + 1) for i in range(6)]) for j in range(n)]


def _reverse(messages):
    n = int(re.search(r"provide you with (\d+) passages", messages[1]["content"]).group(1))
    return " > ".join(f"[{i}]" for i in range(n, 0, -1))


def test_ledger_counts_interrupted_passes_and_keeps_the_first_start(tmp_path):
    from retriever_training.ranking import LLMRankConfig, ledger_path
    from retriever_training.rank_chat import rank_with_chat

    cfg = LLMRankConfig(mode="listwise", max_candidates=6, window=6, step=3, concurrency=1)
    out = tmp_path / "rankings.jsonl"

    def dies_at_call_8(messages):
        if len(first.requests) == 8:
            raise KeyboardInterrupt
        return _reverse(messages)

    first = FakeChatClient(dies_at_call_8)
    with pytest.raises(KeyboardInterrupt):
        rank_with_chat(_lists(10), CORPUS, cfg, out, LLMCache(tmp_path / "c.sqlite"), client=first, progress=False)
    led = json.loads(ledger_path(out).read_text())
    assert led["total"]["calls"] == len(first.requests) >= 8 and led["runs"][0]["status"] == "interrupted"
    assert led["first_started"] == led["runs"][0]["started_at"]
    led["first_started"] = led["runs"][0]["started_at"] = "2000-01-01T00:00:00"  # a run long ago
    ledger_path(out).write_text(json.dumps(led))

    done = {r["qid"] for r in read_jsonl(out)}
    second = FakeChatClient(_reverse)
    rank_with_chat([c for c in _lists(10) if c.qid not in done], CORPUS, cfg, out,
                   LLMCache(tmp_path / "c.sqlite"), client=second, progress=False)
    led = json.loads(ledger_path(out).read_text())
    assert [r["status"] for r in led["runs"]] == ["interrupted", "finished"]  # one entry per run
    assert led["total"]["calls"] == len(first.requests) + len(second.requests)
    assert led["first_started"] == "2000-01-01T00:00:00"


def test_ledger_is_checkpointed_while_a_run_goes_on(tmp_path):
    """A kill -9 skips every handler: what was saved at the last checkpoint is what counts."""
    from retriever_training.ranking import Ledger, ledger_path

    out = tmp_path / "rankings.jsonl"
    led = Ledger(mode="listwise", model="m", calls=49)
    led.checkpoint(out)
    assert not ledger_path(out).exists()
    led.calls = 50
    led.checkpoint(out)
    led.calls = 60
    led.checkpoint(out)  # 10 calls since the last save: not yet
    saved = json.loads(ledger_path(out).read_text())
    assert saved["total"]["calls"] == 50 and saved["runs"][0]["status"] == "running"
    led.calls = 100
    led.checkpoint(out)
    saved = json.loads(ledger_path(out).read_text())
    assert saved["total"]["calls"] == 100 and len(saved["runs"]) == 1  # the run's entry, updated


def test_a_damaged_ledger_is_kept_aside_not_a_crash(tmp_path, capsys):
    from retriever_training.ranking import Ledger, ledger_path, save_ledger

    out = tmp_path / "rankings.jsonl"
    ledger_path(out).write_text('{"total": {"calls": 3}, "runs": [')
    save_ledger(out, Ledger(mode="listwise", model="m", calls=2))
    assert json.loads(ledger_path(out).read_text())["total"]["calls"] == 2
    assert "unreadable" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]


# -------------------------------------------------------------- the LLM cache
def _filled(path, n=400):
    c = LLMCache(path)
    c.put_many([(f"k{i}", {"text": "x" * 200, "i": i}) for i in range(n)])
    c.close()
    # Fold the WAL into the main file, as a clean exit eventually does.
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _truncate_half(p):
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)


# (name, damage(path), entries the reopened cache must still hold: None = it must stop with a UserError)
CACHE_CASES = [
    ("random bytes", lambda p: p.write_bytes(os.urandom(p.stat().st_size)), 0),
    ("zeroed", lambda p: p.write_bytes(bytes(p.stat().st_size)), 0),
    ("truncated to half", _truncate_half, "some"),
    ("emptied after use", lambda p: p.write_bytes(b""), None),
]


@pytest.mark.parametrize("name,damage,kept", CACHE_CASES, ids=[c[0] for c in CACHE_CASES])
def test_a_damaged_cache_loses_nothing_that_can_be_read(tmp_path, capsys, name, damage, kept):
    path = tmp_path / "llm_cache.sqlite"
    _filled(path)
    damage(path)
    if kept is None:
        with pytest.raises(LLMCacheError, match=r"llm_cache\.sqlite is empty \(0 bytes\) but held answers"):
            LLMCache(path)
        return
    cache = LLMCache(path)
    err = capsys.readouterr().err
    asides = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert "warning:" in err and str(path) in err and asides and asides[0].name in err
    n = len(cache)
    assert (n == 0) if kept == 0 else (50 < n < 400), n
    assert f"kept the {n} entries" in err
    cache.put("new", {"text": "y"})
    assert cache.get("new") == {"text": "y"}
    if n:
        assert cache.get("k0") == {"text": "x" * 200, "i": 0}


def test_an_empty_file_that_never_held_an_entry_is_a_fresh_cache(tmp_path, capsys):
    path = tmp_path / "llm_cache.sqlite"
    path.write_bytes(b"")
    cache = LLMCache(path)
    assert "never held an entry" in capsys.readouterr().err
    cache.put("k", 1)
    assert cache.get("k") == 1 and len(cache) == 1


def test_a_cache_filled_before_the_marker_existed_is_protected_too(tmp_path):
    path = tmp_path / "llm_cache.sqlite"
    _filled(path, n=3)
    path.with_name(path.name + ".written").unlink()  # as a cache written by an older version
    LLMCache(path).close()
    path.write_bytes(b"")
    with pytest.raises(LLMCacheError):
        LLMCache(path)
