"""The retrain recipe: every section's config, the command-line shortcuts and the checks that tie
sections together.

The dataclass defaults are the shipped recipe (the measured best settings), so a user's corpus
needs no YAML:

    distilrag retrain --corpus my_docs/ --queries my_questions.txt
    distilrag label   --corpus corpus.jsonl                      # the LLM writes the queries

`--corpus X` is `--label.corpus=X`; `--queries F` is `--queries.source=file --queries.file=F`;
`--budget-minutes M` / `--max-queries N` are `--llm_rank.budget_minutes=M` / `--llm_rank.max_queries=N`;
`--config <yaml>` and `--section.key=value` overrides still apply (an override wins over both).
The labels dir and the run name default to names derived from the corpus (`resolve`).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rag.config import ConfigError, require
from retriever_training.distill import DistillConfig
from rag.settings import REPO_ROOT
from retriever_training.candidates import CandidatesConfig
from retriever_training.queries import QueriesConfig
from retriever_training.ranking import LLMRankConfig
from retriever_training.score_teacher import TeacherConfig
from retriever_training.train_ranker import RankerConfig


@dataclass(frozen=True)
class LabelConfig:
    corpus: str = ""        # folder, .jsonl[.gz] or shipped name: there is no sensible default corpus
    labels_dir: str = ""    # "" = one per corpus and selection settings under runs/labels/;
                            # relative paths are under the repository root


LABEL_SECTIONS = {"label": LabelConfig, "queries": QueriesConfig, "candidates": CandidatesConfig,
                  "llm_rank": LLMRankConfig}


def labels_path(cfg: LabelConfig) -> Path:
    p = Path(cfg.labels_dir)
    return p if p.is_absolute() else REPO_ROOT / p


def _sha256(path: str) -> str:
    p = Path(path).expanduser()
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""


def selection(cfgs: dict) -> dict:
    """The settings that decide a label set's queries, candidates and rankings (a query log by its
    content, so an edited log is a new selection); only those the query source reads."""
    q, c, r = cfgs["queries"], cfgs["candidates"], cfgs["llm_rank"]
    sel: dict = {"source": q.source, "n": q.n, "seed": q.seed}
    if q.source == "split":
        sel["split"] = q.split
    elif q.source in ("file", "feedback"):
        sel["file_sha256"] = _sha256(q.file)
    else:
        sel.update(synth_passages=q.synth_passages, synth_filter_depth=q.synth_filter_depth)
    return {"queries": sel, "candidates": asdict(c),
            "llm_rank": {"mode": r.mode, "max_candidates": r.max_candidates}}


@dataclass(frozen=True)
class RunConfig:
    name: str = ""           # "" = named after the corpus: runs/<corpus>/
    unranked: str = "rank"   # rank: label what is missing first; skip: train on the ranked queries only
    force: bool = False      # publish even if the verdict says the student is not better than the base
    set_default: bool = True  # make the published model what "distilled" means
    test_split: str = "test"  # the corpus's held-out split, reported in the model card with a paired
                              # bootstrap against the base ("" skips it; a corpus without it is skipped)
    qrels: str = ""           # gold qrels file (qid 0 docid rel): the verdict on the held-out labelled
                              # queries is also reported, and gates, against them (--qrels)
    nproc: int = 1            # processes for the ranker and student training (torchrun DDP, ddp.py;
                              # one per GPU); batch sizes stay global, so the recipe is unchanged

    def __post_init__(self):
        require(self, choices={"unranked": ("rank", "skip")}, positive=("nproc",))


SECTIONS = {**LABEL_SECTIONS, "ranker": RankerConfig, "teacher": TeacherConfig, "distill": DistillConfig,
            "run": RunConfig}


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def corpus_slug(spec: str) -> str:
    """A directory name for a corpus: a shipped one's name, a path's name plus a hash of where it
    is (every BEIR export is called corpus.jsonl; two of them must not share a label set or run)."""
    from rag.settings import CORPORA_DIR

    path = Path(spec).expanduser()
    if not path.is_absolute() and (CORPORA_DIR / spec / "corpus.jsonl.gz").exists():
        return re.sub(r"[^A-Za-z0-9._-]+", "_", spec)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name.split(".")[0]) or "corpus"
    return f"{name}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:6]}"


def resolve(cfgs: dict, corpus) -> dict:
    """Fill in what defaults to the corpus: the labels dir (one per corpus content and selection
    settings, so a new queries.n or log gets its own) and the run name."""
    from rag.settings import runs_dir

    out = dict(cfgs)
    lc = cfgs["label"]
    if not lc.labels_dir:
        key = fingerprint(selection(cfgs), corpus.hash)[:8]
        out["label"] = replace(lc, labels_dir=str(runs_dir() / "labels" / f"{corpus_slug(lc.corpus)}-{key}"))
    if "run" in cfgs and not cfgs["run"].name:
        out["run"] = replace(cfgs["run"], name=corpus_slug(lc.corpus))
    return out


def check_config(cfgs: dict) -> None:
    """Settings of different sections that must agree; all disagreements in one line."""
    lab, cand, rank = cfgs["label"], cfgs["candidates"], cfgs["llm_rank"]
    bad = []
    if not lab.corpus:
        bad.append("no corpus: give --corpus <folder | file.jsonl | shipped name> (or --config <yaml>)")
    if cand.depth < rank.max_candidates:
        bad.append(f"candidates.depth ({cand.depth}) is below llm_rank.max_candidates ({rank.max_candidates}): "
                   "the LLM ranks the first-stage top max_candidates; raise --candidates.depth or lower "
                   "--llm_rank.max_candidates")
    if {"ranker", "teacher", "distill"} <= set(cfgs):
        ranker, teacher, dist = cfgs["ranker"], cfgs["teacher"], cfgs["distill"]
        list_size = ranker.list_size or teacher.depth
        if list_size > rank.max_candidates:
            bad.append(f"ranker.list_size ({list_size}) exceeds llm_rank.max_candidates ({rank.max_candidates}): "
                       "the ranker learns the LLM's order, which covers only those; lower --ranker.list_size")
        if teacher.depth != dist.docs_per_query:
            bad.append(f"teacher.depth ({teacher.depth}) differs from distill.docs_per_query ({dist.docs_per_query}): "
                       "the teacher scores exactly the candidates the student trains on; set both, e.g. "
                       f"--teacher.depth={dist.docs_per_query} --distill.docs_per_query={dist.docs_per_query}")
        if teacher.depth > cand.depth:
            bad.append(f"teacher.depth ({teacher.depth}) exceeds candidates.depth ({cand.depth}): a labelled "
                       "query has only candidates.depth candidates to score")
        from retriever_training.processes import batch_split_error

        n = cfgs["run"].nproc if "run" in cfgs else 1
        bad += filter(None, (batch_split_error("ranker.batch_size", ranker.batch_size, n),
                             batch_split_error("distill.batch_size", dist.batch_size, n)))
    if bad:
        raise ConfigError("; ".join(bad))


def parse_command(argv: list[str] | None, prog: str, doc: str, flags: list = ()):
    """(argparse namespace, every section's config) for `distilrag label|retrain`."""
    import argparse

    from rag.config import load_sections

    ap = argparse.ArgumentParser(prog=prog, description=doc, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML with one mapping per section (optional: the "
                                                   "defaults are the shipped recipe)")
    ap.add_argument("--corpus", default=None, help="a folder of documents, a .jsonl[.gz] of passages or a "
                                                   "shipped corpus name (label.corpus)")
    ap.add_argument("--queries", default=None, help="a query log: text, one question a line, or JSONL with "
                                                    "'query' (queries.source=file); without it the LLM writes "
                                                    "queries from the corpus")
    ap.add_argument("--budget-minutes", default=None, help="stop labelling at the first query boundary after "
                                                           "this many minutes (llm_rank.budget_minutes)")
    ap.add_argument("--max-queries", default=None, help="stop labelling once this many queries are ranked "
                                                        "(llm_rank.max_queries)")
    ap.add_argument("--nproc", default=None, help="train the ranker and the student on N processes "
                                                  "(torchrun DDP; run.nproc)")
    for names, kwargs in flags:
        ap.add_argument(*names, **kwargs)
    args, overrides = ap.parse_known_args(argv)
    shortcuts = [f"label.corpus={args.corpus}"] if args.corpus else []
    if args.queries:
        shortcuts += ["queries.source=file", f"queries.file={args.queries}"]
    if args.budget_minutes is not None:
        shortcuts.append(f"llm_rank.budget_minutes={args.budget_minutes}")
    if args.max_queries is not None:
        shortcuts.append(f"llm_rank.max_queries={args.max_queries}")
    if args.nproc is not None:
        shortcuts.append(f"run.nproc={args.nproc}")
    cfgs = load_sections(args.config, SECTIONS, [*shortcuts, *overrides])
    check_config(cfgs)
    return args, cfgs
