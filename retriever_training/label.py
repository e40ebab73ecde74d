"""Stages 1-3 as one resumable labelling job: queries -> candidates -> LLM rankings.

    distilrag label --config retriever_training/configs/squad_dev.yaml [--dry-run] [--section.key=value ...]

In:  the config's corpus and query source
Out: <labels_dir>/queries.jsonl, candidates.jsonl.gz, rankings.jsonl (+ rankings.ledger.json),
     synthetic_queries.jsonl (+ .json) when queries.synthetic > 0,
     provenance.json (model and its hash, prompt, mode, counts, dates, config)
Queries and candidates are written once and reused, so a resumed run ranks exactly the same
lists; rankings are appended per query and the LLM cache keeps every finished call.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.records import CandidateList, Query, read_jsonl, write_json, write_jsonl
from rag.settings import REPO_ROOT
from retriever_training.candidates import CandidatesConfig, make_candidates
from retriever_training.llm_rank import LLMRankConfig, rank_candidates
from retriever_training.queries import QueriesConfig, select_queries, synthetic_queries


@dataclass(frozen=True)
class LabelConfig:
    corpus: str = "squad_dev"
    labels_dir: str = "runs/labels"   # relative paths are under the repository root


LABEL_SECTIONS = {"label": LabelConfig, "queries": QueriesConfig, "candidates": CandidatesConfig,
                  "llm_rank": LLMRankConfig}


def labels_path(cfg: LabelConfig) -> Path:
    p = Path(cfg.labels_dir)
    return p if p.is_absolute() else REPO_ROOT / p


def prepare_lists(cfgs: dict, progress: bool = True) -> tuple[Path, list[CandidateList]]:
    """Write (once) and return the queries and candidate lists the LLM will rank."""
    from rag.corpus import load_corpus

    lc: LabelConfig = cfgs["label"]
    out = labels_path(lc)
    qpath, cpath = out / "queries.jsonl", out / "candidates.jsonl.gz"
    if not qpath.exists():
        write_jsonl(qpath, select_queries(cfgs["queries"], lc.corpus))
    queries = list(read_jsonl(qpath, Query))
    if not cpath.exists():
        corpus = load_corpus(lc.corpus)
        write_jsonl(cpath, make_candidates(corpus, queries, cfgs["candidates"], progress))
    synthetic_queries(cfgs["queries"], lc.corpus, out, progress)  # LLM time too: made here, read by the retrain
    return out, list(read_jsonl(cpath, CandidateList))


def run_labelling(cfgs: dict, dry_run: bool = False, progress: bool = True):
    from rag.corpus import load_corpus

    lc: LabelConfig = cfgs["label"]
    out, cands = prepare_lists(cfgs, progress)
    corpus = load_corpus(lc.corpus)
    rankings = out / "rankings.jsonl"
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    ledger = rank_candidates(cands, corpus, cfgs["llm_rank"], rankings, progress=progress,
                             dry_run=dry_run)
    if dry_run:
        return ledger
    n_done = sum(1 for _ in read_jsonl(rankings)) if rankings.exists() else 0
    prov_path = out / "provenance.json"
    prov = {}
    if prov_path.exists():
        prov = json.loads(prov_path.read_text())
    from rag.models import DEFAULT_LLM

    prov.update({
        "teacher_model": DEFAULT_LLM.name if cfgs["llm_rank"].mode == "query_likelihood" else ledger.model,
        "teacher_model_sha256": DEFAULT_LLM.sha256 if cfgs["llm_rank"].mode == "query_likelihood" else "",
        "mode": cfgs["llm_rank"].mode, "prompt_id": _prompt_id(cfgs["llm_rank"].mode),
        "ledger_model": ledger.model,  # includes the runtime for query likelihood (llama_cpp / transformers)
        "corpus": lc.corpus, "queries": len(cands), "ranked": n_done, "complete": n_done >= len(cands),
        "first_started": prov.get("first_started", started), "last_updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # Relative paths only: the label set is committed and must not name this machine's folders.
        "config": {k: (asdict(v) if k != "label" else {**asdict(v), "labels_dir": _portable(out)})
                   for k, v in cfgs.items()},
    })
    write_json(prov_path, prov)
    return ledger


def _portable(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def _prompt_id(mode: str) -> str:
    if mode == "query_likelihood":
        from retriever_training.query_likelihood import PROMPT_ID, PROMPT_VERSION
    else:
        from retriever_training.prompts import PROMPTS

        return f"{PROMPTS[mode].id}@v{PROMPTS[mode].version}"
    return f"{PROMPT_ID}@v{PROMPT_VERSION}"


def main(argv: list[str] | None = None) -> None:
    import argparse

    from rag.config import load_sections
    from rag.settings import apply_offline_env

    ap = argparse.ArgumentParser(prog="distilrag label", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--dry-run", action="store_true", help="print calls, tokens and cost; spend nothing")
    args, overrides = ap.parse_known_args(argv)
    apply_offline_env()
    cfgs = load_sections(args.config, LABEL_SECTIONS, overrides, allow_other_sections=True)
    ledger = run_labelling(cfgs, dry_run=args.dry_run)
    print(json.dumps(asdict(ledger), indent=1))


if __name__ == "__main__":
    main()
