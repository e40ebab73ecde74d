"""Every record that moves between stages, and the JSONL read/write helpers. Defined once.

Records carry ids and a `schema_version`; passage text is looked up in the corpus by id.
Files ending in `.gz` are gzip-compressed. Writes are atomic (temp file + rename) and appends
are line-buffered with fsync, so a killed job loses at most the record being written: the torn
line it leaves is cut away (with a warning) before the next append, so it never glues onto it.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

from rag.errors import UserError

SCHEMA_VERSION = 1


class RecordsError(UserError, ValueError):
    """A records file that cannot be read as JSONL (bad line, not UTF-8, damaged gzip)."""


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of a corpus (a SQuAD paragraph, a chunk of a user's file)."""
    docid: str
    text: str
    title: str = ""
    source: str = ""  # file path or article the passage came from
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Query:
    qid: str
    query: str
    answers: list[str] = field(default_factory=list)  # reference answer strings (may be empty)
    split: str = ""  # train / dev / test / "" for unsplit user queries
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Candidate:
    docid: str
    score: float
    rank: int  # 1-based


@dataclass(frozen=True)
class CandidateList:
    """Stage 2 output: the first-stage retriever's top-N for one query."""
    qid: str
    query: str
    retriever: str
    candidates: list[Candidate]
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class LLMRanking:
    """Stage 3 output: the LLM's order of a query's candidates (best first).

    `scores` is filled by scoring modes (query likelihood, pointwise) and empty for listwise.
    """
    qid: str
    docids_in: list[str]
    ranked_docids: list[str]
    model: str
    prompt_id: str
    mode: str
    n_calls: int = 0
    n_repairs: int = 0
    scores: list[float] = field(default_factory=list)  # aligned with ranked_docids
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class TeacherScores:
    """Stage 5 output: the trained ranker's scores over a query's candidates."""
    qid: str
    docids: list[str]
    scores: list[float]
    teacher: str
    labelled: bool = True  # False for queries the LLM never saw
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class Feedback:
    """A user's thumbs up/down on one answer in the app (an extra query pool for retraining)."""
    question: str
    answer: str
    retriever: str
    docids: list[str]
    rating: int  # +1 / -1
    timestamp: str
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class AnswerRecord:
    """One question's line in an evaluation run's <retriever>/answers.jsonl (eval/run.py writes it;
    eval/plan.py, metrics_table.py, answer_checks.py, answer_cache.py, ragas_eval.py, report.py read it).

    Optional fields left at None are not written, so a line has the keys its outcome set:
    retrieval-only: answer None, contexts [] and qa {answer_in_context} (references known);
    failed: error (no answer, no qa; redone on resume); answered: answer, cited_docids,
    no_answer, qa, and with --grounding also grounding and checks (eval/answer_checks.py).
    No schema_version: run directories written before this record existed load as they are.
    """
    qid: str
    question: str
    references: list[str]
    retriever: str                 # the spec, e.g. "base+ranker"
    retrieved: list[str]           # docids, best first, to the run's depth
    scores: list[float]            # aligned with retrieved
    contexts: list[str]            # the texts of the top-k the LLM was given
    timings: dict                  # retrieve_s; answered: first_token_s and total_s, retrieval included
    answer: str | None = None      # its citation re-pointed where needed (rag.grounding.repair_citations)
    cited_docids: list[str] | None = None
    model_answer: str | None = None  # the LLM's own text, when the citation was re-pointed
    no_answer: bool | None = None  # the answer abstains ("I don't know ...")
    qa: dict | None = None         # eval.qa_metrics scores (em, f1, ...; answer_in_context)
    grounding: dict | None = None  # method -> {supported, reason}
    checks: dict | None = None     # abstained, citation_repaired, unsupported_<method>: 0/1
    checks_version: int | None = None  # eval.answer_checks.CHECKS_VERSION they were made by
    cached: bool | None = None     # served from the answer cache: timings are the call that made it
    answer_key: str | None = None  # its entry in the LLM cache (eval/answer_cache.py); export-answers reads it
    error: str | None = None       # one scrubbed line: the question failed


@dataclass(frozen=True)
class CachedCall:
    """One LLM cache entry carried to another machine (eval/answer_archive.py writes and reads it):
    the content-hash key of the prompt and what the call returned."""
    key: str
    value: dict


@dataclass
class LedgerRun:
    """One labelling run's entry in <labels>/rankings.ledger.json (retriever_training/ranking.py
    writes it, counting as it goes; label_cost reads earlier runs' rates; the model card keeps
    the totals). Mutable: the run adds to it call by call."""
    mode: str
    model: str
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repairs: int = 0
    malformed: int = 0
    seconds: float = 0.0
    queries_done: int = 0
    cost_usd: float = 0.0
    est_tokens: int = 0      # the paid work in label_cost's estimated tokens: the rate the next estimate uses
    stopped: str = ""        # why a run ended before its last query: "budget" | "max_queries"
    extra: dict = field(default_factory=dict)
    machine: str = ""        # label_cost.machine_id(): rates are compared on the same machine only
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # one ledger entry per run


@dataclass(frozen=True)
class ModelCard:
    """The facts of a published distilled model: distilrag_card.json beside its weights.
    retriever_training/retrain.py makes it, publish.py gates on it and writes it with the README
    card, rag.pipelines and the app read it (ModelCard.read). Sections are the stage outputs as
    written (distill = distill_metrics.json: base_dev, best_dev, best_epoch, ...; verdict =
    verdict.json; heldout = the gold test split's comparison; ledger = the labelling cost)."""
    name: str
    corpus: str
    created: str = ""
    teacher: dict = field(default_factory=dict)       # model, sha256, mode, prompt, queries, label set
    queries_used: dict = field(default_factory=dict)  # labelled / held out / unlabelled pool counts
    ranker: dict = field(default_factory=dict)
    distill: dict = field(default_factory=dict)
    heldout: dict = field(default_factory=dict)
    verdict: dict = field(default_factory=dict)
    verdict_sentence: str = ""
    ledger: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def read(cls, path: str | Path) -> "ModelCard | None":
        """The card in a model directory; None when there is none or it is not a card. Cards of
        the first layout (a flat "metrics" {base, distilled}) are read into `distill`."""
        try:
            d = json.loads((Path(path) / "distilrag_card.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict):
            return None
        old = d.get("metrics")
        if isinstance(old, dict) and not d.get("distill"):
            d["distill"] = {"base_dev": old.get("base") or {},
                            "best_dev": old.get("distilled") or {k: v for k, v in old.items()
                                                                 if isinstance(v, (int, float))}}
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d.setdefault("name", Path(path).name)
        d.setdefault("corpus", "")
        for f in dataclasses.fields(cls):  # a section of another type is dropped, not trusted
            if f.name in d and f.default_factory is dict and not isinstance(d[f.name], dict):
                del d[f.name]
        return cls(**d)


T = TypeVar("T")

_NESTED = {CandidateList: {"candidates": Candidate}}


def _answer_keys(d: dict) -> dict:
    """An answer record's line: optional fields left at None are left out, except a retrieval-only
    line's answer (None: not asked); a failed line has no answer key."""
    return {k: v for k, v in d.items() if v is not None or (k == "answer" and d.get("error") is None)}


_TRIM = {AnswerRecord: _answer_keys}


def to_dict(rec: Any) -> dict:
    d = dataclasses.asdict(rec)
    trim = _TRIM.get(type(rec))
    return trim(d) if trim else d


def from_dict(cls: type[T], d: dict) -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k in names}
    for key, sub in _NESTED.get(cls, {}).items():
        kwargs[key] = [sub(**x) if isinstance(x, dict) else x for x in kwargs.get(key, [])]
    return cls(**kwargs)


def read_jsonl(path: str | Path, cls: type[T] | None = None) -> Iterator[Any]:
    """Yield dicts (or `cls` records). A torn last line from a killed writer is skipped."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")) as f:
            lines = f.read().split(b"\n")
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise RecordsError(f"{path} is a damaged gzip file ({e or type(e).__name__}); "
                           "restore or regenerate it.") from None
    last = len(lines) - 1  # after the final newline: "" for a whole file, a fragment for a torn one
    for i, raw in enumerate(lines):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if i == last and any(_decodes(raw[:-k]) for k in (1, 2, 3)):
                break  # a write cut inside a character
            raise RecordsError(f"{path}:{i + 1} is not UTF-8 text (byte {e.start}); re-save the "
                               "file as UTF-8.") from None
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            if not any(x.strip() for x in lines[i + 1:]):
                break  # interrupted append; the job that resumes will redo this record
            raise RecordsError(f"{path}:{i + 1}: not valid JSON; delete the line (if an interrupted "
                               "job wrote it, it redoes the record) or fix it.") from None
        if not isinstance(d, dict):
            raise RecordsError(f"{path}:{i + 1}: a JSON {type(d).__name__}, not an object; "
                               "each line must be one {...} record.")
        yield from_dict(cls, d) if cls else d


def _decodes(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Atomically replace `path` with `records` (dataclasses or dicts). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    n = 0
    try:
        raw = open(tmp, "wb")
        # No file name and mtime=0 in the gzip header: committed data files change only with content.
        opener = io.TextIOWrapper(gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0),
                                  encoding="utf-8") if str(path).endswith(".gz") else io.TextIOWrapper(raw, encoding="utf-8")
        with raw, opener as f:
            for rec in records:
                d = rec if isinstance(rec, dict) else to_dict(rec)
                f.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")
                n += 1
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def drop_torn_tail(path: str | Path) -> int:
    """Cut a last line without its newline (left by a killed append) off `path`; returns the bytes cut.

    Appends write whole lines, so only a torn write leaves the file not ending in a newline;
    appending after it would glue the next record onto the fragment and make one invalid line.
    A last line that is a whole record (only the newline missing) gets its newline instead.
    """
    path = Path(path)
    try:
        f = open(path, "rb+")
    except FileNotFoundError:
        return 0
    with f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        end, keep = size, 0
        while end > 0:  # find the last newline, reading backwards in blocks
            start = max(0, end - 65536)
            f.seek(start)
            nl = f.read(end - start).rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            end = start
        f.seek(keep)
        try:  # a whole record that lacks only its newline is one the reader counts: keep it
            if isinstance(json.loads(f.read(size - keep).decode("utf-8")), dict):
                f.seek(size)
                f.write(b"\n")
                return 0
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            pass
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    print(f"warning: {path} ended in a line cut off by an interrupted write ({size - keep} bytes); "
          "removed it, its record is redone.", file=sys.stderr)
    return size - keep


def append_jsonl(path: str | Path, rec: Any) -> None:
    """Append one record durably (used by resumable jobs and the feedback log)."""
    append_jsonl_many(path, [rec])


def append_jsonl_many(path: str | Path, recs: Iterable[Any]) -> None:
    """Append records with one fsync (after cutting away a torn last line, see drop_torn_tail)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    drop_torn_tail(path)
    with open(path, "a", encoding="utf-8") as f:
        for rec in recs:
            d = rec if isinstance(rec, dict) else to_dict(rec)
            f.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty JSON."""
    _atomic_text(Path(path), json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
