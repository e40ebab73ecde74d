"""Paid answers carried to another machine: a run's cached answers out to a file, and back in.

    distilrag eval export-answers runs/eval/NAME FILE.jsonl.gz
    distilrag eval import-answers FILE.jsonl.gz [FILE ...]

In:  export: a run directory (every <retriever>/answers.jsonl under it, answers moved aside by a
     retrain included) and the LLM cache (rag/llm_cache.py); import: files export wrote.
Out: export: FILE, one rag.records.CachedCall per distinct prompt the run's answers were cached
     under, and every answer FILE held already (answers accumulate over machines and sessions),
     sorted by key, written atomically (gzip when the name ends in .gz, byte-identical for the
     same answers, so a committed file changes only when they do);
     import: those entries in the LLM cache; an entry the cache already holds is kept as it is.

Why this is safe: a key is the sha256 of everything the prompt was built from (eval/answer_cache.py:
the answering model's weights, the prompt version, the question, the passages in order, the
generation parameters), so an imported answer is only ever served to the identical prompt. A
machine that imports a long run's answers and runs the same `distilrag eval` command pays only for
the prompts its own retrievers build differently (a retrain whose weights differ in the last digits
changes a few top-k lists, not most).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rag.errors import UserError

_KEY = re.compile(r"^[0-9a-f]{64}$")


class ArchiveError(UserError, ValueError):
    pass


def run_answer_keys(run_dir: str | Path) -> set[str]:
    """The cache keys of every answered line in the run directory."""
    from rag.records import read_jsonl

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("*/answers.jsonl"))
    if not files:
        raise ArchiveError(f"{run_dir} holds no <retriever>/answers.jsonl: give the directory a "
                           "`distilrag eval` run wrote (it prints it at the end).")
    return {r["answer_key"] for f in files for r in read_jsonl(f)
            if isinstance(r.get("answer_key"), str) and r.get("answer") is not None}


def export_answers(run_dir: str | Path, out: str | Path, cache=None) -> tuple[int, int, int]:
    """Write the run's cached answers to `out`, keeping the entries `out` holds already:
    (entries written, of them kept from `out`, keys of the run the cache no longer holds)."""
    from rag.llm_cache import LLMCache
    from rag.records import CachedCall, write_jsonl

    keys = run_answer_keys(run_dir)
    cache = cache if cache is not None else LLMCache()
    calls, missing = {}, 0
    for k in keys:
        v = cache.get(k)
        if isinstance(v, dict) and isinstance(v.get("text"), str):
            calls[k] = CachedCall(k, v)
        else:
            missing += 1
    if not calls:
        raise ArchiveError(f"none of the {len(keys)} answers of {run_dir} is in the LLM cache "
                           f"{cache.path} (was the run made on another machine, or the cache deleted?); "
                           "nothing written.")
    held = {c.key: c for c in read_archive(out)} if Path(out).exists() else {}
    merged = {**held, **calls}
    write_jsonl(out, [merged[k] for k in sorted(merged)])
    return len(merged), len(merged) - len(calls), missing


def read_archive(path: str | Path) -> list:
    from rag.records import CachedCall, RecordsError, read_jsonl

    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path} does not exist: give a file `distilrag eval export-answers` wrote.")
    calls = []
    try:
        for i, d in enumerate(read_jsonl(path), 1):
            key, value = d.get("key"), d.get("value")
            if not (isinstance(key, str) and _KEY.match(key) and isinstance(value, dict)
                    and isinstance(value.get("text"), str)):
                raise ArchiveError(f"{path}: record {i} is not a cached answer ({{key: 64 hex digits, "
                                   "value: {text, ...}}); give a file export-answers wrote, unedited.")
            calls.append(CachedCall(key, value))
    except RecordsError as e:
        raise ArchiveError(str(e)) from None
    return calls


def import_answers(paths, cache=None) -> tuple[int, int]:
    """Put the files' answers into the cache: (entries added, entries the cache already held).
    Every file is read and checked before anything is written."""
    from rag.llm_cache import LLMCache

    calls = [c for p in paths for c in read_archive(p)]
    cache = cache if cache is not None else LLMCache()
    new = {c.key: c.value for c in calls if cache.get(c.key) is None}
    if new:
        cache.put_many(list(new.items()))
    return len(new), len({c.key for c in calls}) - len(new)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="distilrag eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("export-answers", help="a run's cached answers to a file")
    p.add_argument("run_dir")
    p.add_argument("out", help="the file to write (.jsonl or .jsonl.gz)")
    p = sub.add_parser("import-answers", help="answers a run exported, into this machine's LLM cache")
    p.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    try:
        if a.action == "export-answers":
            n, kept, missing = export_answers(a.run_dir, a.out)
            gone = f"; {missing} answers of the run are no longer in the cache and were left out" if missing else ""
            print(f"wrote {n} cached answers to {a.out} ({kept} of them held there before){gone}")
        else:
            added, held = import_answers(a.files)
            print(f"imported {added} answers into the LLM cache ({held} were there already); a "
                  "`distilrag eval` whose prompts match them pays nothing for those")
    except (ArchiveError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
