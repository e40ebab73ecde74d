"""Paid answers carried to another machine: exported from a run, imported into a fresh cache, a rerun pays nothing."""
import gzip
import json

import pytest

from eval.answer_archive import ArchiveError, export_answers, import_answers
from eval.run import main as eval_main
from eval.run import run_eval
from rag.llm_cache import LLMCache
from rag.records import read_jsonl
from tests.eval.test_answer_cache import answer, two_retrievers  # noqa: F401  (a fixture)
from tests.fakes import scripted_llm


def test_exported_answers_make_a_fresh_machines_rerun_free(two_retrievers):  # noqa: F811
    tmp, cfg = two_retrievers
    here = LLMCache(tmp / "here.sqlite")
    llm = scripted_llm(answer)
    run_eval(cfg, out=tmp / "run1", llm=llm, progress=False, cache=here)
    assert llm.calls == 5
    recs = [r for s in ("a", "b") for r in read_jsonl(tmp / "run1" / s / "answers.jsonl")]
    assert all(len(r["answer_key"]) == 64 for r in recs) and len({r["answer_key"] for r in recs}) == 5

    out = tmp / "answers.jsonl.gz"
    assert export_answers(tmp / "run1", out, here) == (5, 0, 0)
    first = out.read_bytes()
    assert export_answers(tmp / "run1", out, here) == (5, 0, 0) and out.read_bytes() == first  # stable to commit
    lines = [json.loads(x) for x in gzip.decompress(first).decode().splitlines()]
    assert [x["key"] for x in lines] == sorted(x["key"] for x in lines)

    there = LLMCache(tmp / "there.sqlite")
    assert import_answers([out], there) == (5, 0)
    assert import_answers([out], there) == (0, 5)  # nothing doubled, what is held is kept
    llm2 = scripted_llm(answer)
    run_eval(cfg, out=tmp / "run2", llm=llm2, progress=False, cache=there)
    assert llm2.calls == 0
    for s in ("a", "b"):
        a = {r["qid"]: r["answer"] for r in read_jsonl(tmp / "run1" / s / "answers.jsonl")}
        b = {r["qid"]: r["answer"] for r in read_jsonl(tmp / "run2" / s / "answers.jsonl")}
        assert a == b


def test_a_damaged_archive_is_refused_before_anything_is_written(two_retrievers):  # noqa: F811
    tmp, cfg = two_retrievers
    here = LLMCache(tmp / "here.sqlite")
    run_eval(cfg, out=tmp / "run", llm=scripted_llm(answer), progress=False, cache=here)
    good = tmp / "good.jsonl"
    export_answers(tmp / "run", good, here)
    bad = tmp / "bad.jsonl"
    bad.write_text(good.read_text() + json.dumps({"key": "not-a-key", "value": {"text": "x"}}) + "\n")
    fresh = LLMCache(tmp / "fresh.sqlite")
    with pytest.raises(ArchiveError, match="record 6 is not a cached answer"):
        import_answers([good, bad], fresh)
    assert len(fresh) == 0
    with pytest.raises(ArchiveError, match="does not exist"):
        import_answers([tmp / "missing.jsonl"], fresh)


def test_export_says_what_is_wrong_with_its_input(two_retrievers, capsys):  # noqa: F811
    tmp, cfg = two_retrievers
    assert eval_main(["export-answers", str(tmp / "nowhere"), str(tmp / "x.jsonl")]) == 2
    assert "holds no <retriever>/answers.jsonl" in capsys.readouterr().err
    run_eval(cfg, out=tmp / "run", llm=scripted_llm(answer), progress=False, cache=LLMCache(tmp / "c.sqlite"))
    with pytest.raises(ArchiveError, match="none of the 5 answers"):  # made with another cache
        export_answers(tmp / "run", tmp / "x.jsonl", LLMCache(tmp / "empty.sqlite"))
    assert not (tmp / "x.jsonl").exists()


def test_an_archive_accumulates_answers_of_several_runs(two_retrievers):  # noqa: F811
    """Exporting into a file that holds answers keeps them: a session's new answers join the
    committed ones instead of replacing them (another machine paid for those)."""
    from dataclasses import replace

    tmp, cfg = two_retrievers
    here = LLMCache(tmp / "here.sqlite")
    run_eval(replace(cfg, retrievers=("a",)), out=tmp / "run_a", llm=scripted_llm(answer), progress=False, cache=here)
    out = tmp / "answers.jsonl.gz"
    n_a = export_answers(tmp / "run_a", out, here)[0]
    first = {x["key"] for x in read_jsonl(out)}
    assert n_a == len(first) == 4
    # Another machine: only retriever b, whose one different prompt (q4's reversed passages) is new.
    there = LLMCache(tmp / "there.sqlite")
    run_eval(replace(cfg, retrievers=("b",)), out=tmp / "run_b", llm=scripted_llm(answer), progress=False, cache=there)
    assert export_answers(tmp / "run_b", out, there) == (5, 1, 0)
    assert {x["key"] for x in read_jsonl(out)} >= first and len(list(read_jsonl(out))) == 5
    assert import_answers([out], LLMCache(tmp / "third.sqlite")) == (5, 0)
