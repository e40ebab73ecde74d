"""Stages 1-3 as one resumable labelling job: queries -> candidates -> LLM rankings.

    distilrag label --corpus my_docs/ [--queries my_questions.txt] [--dry-run] [--budget-minutes M]
                    [--max-queries N] [--section.key=value ...]
    distilrag label --config retriever_training/configs/squad_dev.yaml [--dry-run] [--section.key=value ...]

In:  the corpus (folder, JSONL or shipped name) and its query source (a text or JSONL log with
     --queries; without it the LLM writes the queries from the corpus)
Out: <labels_dir>/queries.jsonl, candidates.jsonl.gz, rankings.jsonl (+ rankings.ledger.json),
     synthetic_queries.jsonl (+ .json) when queries.synthetic > 0, selection.json (what chose the
     queries and candidates), provenance.json (model and its hash, prompt, mode, counts, dates, config)
labels_dir defaults to runs/labels/<corpus>-<hash of the selection settings>, so other settings get
their own label set. Queries and candidates are written once and reused, so a resumed run ranks
exactly the same lists; rankings are appended per query and the LLM cache keeps every finished call.
--dry-run prints what is left to pay and its estimated time on this machine (label_cost.py);
--budget-minutes / --max-queries stop at a query boundary with every written query whole (the same
command continues later; the retrain trains on what is ranked).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from rag.config import ConfigError
from rag.records import CandidateList, Query, read_jsonl, write_json, write_jsonl
from rag.settings import REPO_ROOT
from retriever_training.candidates import make_candidates
from retriever_training.llm_rank import rank_candidates
from retriever_training.queries import select_queries, synthetic_queries
from retriever_training.recipe import LABEL_SECTIONS, LabelConfig, labels_path, selection


def _recorded_selection(out: Path) -> dict | None:
    """The selection a label set was made with: selection.json, or for label sets older than it the
    config in provenance.json (whose query log is known by path only, so not compared)."""
    if (out / "selection.json").exists():
        return json.loads((out / "selection.json").read_text())
    if not (out / "provenance.json").exists():
        return None
    prov = json.loads((out / "provenance.json").read_text())
    cfg = prov.get("config", {})
    q = {k: v for k, v in cfg.get("queries", {}).items() if k in ("source", "n", "seed")}
    if q.get("source") == "split":
        q["split"] = cfg["queries"].get("split")
    rank = {k: v for k, v in cfg.get("llm_rank", {}).items() if k in ("mode", "max_candidates")}
    return {"queries": q, "candidates": cfg.get("candidates", {}), "llm_rank": rank,
            "corpus": Path(str(prov.get("corpus", ""))).name.split(".")[0]}


def _differences(have: dict, want: dict, prefix: str = "") -> list[str]:
    """section.key=recorded for every key both record with different values."""
    out = []
    for k in sorted(set(have) & set(want)):
        if isinstance(have[k], dict) and isinstance(want[k], dict):
            out += _differences(have[k], want[k], f"{prefix}{k}.")
        elif have[k] != want[k] and k != "corpus_hash":
            out.append(f"{prefix}{k}={have[k]}")
    return out


def check_selection(out: Path, want: dict) -> None:
    """Refuse a labels dir whose queries were chosen with other settings (a new queries.n or query
    log would otherwise be ignored and the old queries reused); record the settings of a new one."""
    have = _recorded_selection(out)
    if have is None or not (out / "queries.jsonl").exists():
        write_json(out / "selection.json", want)
        return
    diffs = _differences(have, want)
    if have.get("corpus_hash") and have.get("corpus_hash") != want.get("corpus_hash"):
        diffs.append("the corpus as it was then (its passages have changed)")
    if diffs:
        raise ConfigError(f"{out} was labelled with {', '.join(diffs)}, not this run's settings: leave out "
                          "--label.labels_dir (each setting gets its own label set; LLM calls already made "
                          "come from the cache) or name a new one, or go back to those settings.")


def prepare_lists(cfgs: dict, progress: bool = True, corpus=None) -> tuple[Path, list[CandidateList]]:
    """Write (once) and return the queries and candidate lists the LLM will rank."""
    from rag.corpus import load_corpus

    corpus = corpus or load_corpus(cfgs["label"].corpus)
    if not cfgs["label"].labels_dir:
        from retriever_training.recipe import resolve

        cfgs = resolve(cfgs, corpus)
    lc: LabelConfig = cfgs["label"]
    out = labels_path(lc)
    check_selection(out, {**selection(cfgs), "corpus": corpus.name, "corpus_hash": corpus.hash})
    qpath, cpath = out / "queries.jsonl", out / "candidates.jsonl.gz"
    if not qpath.exists():
        write_jsonl(qpath, select_queries(cfgs["queries"], lc.corpus))
    queries = list(read_jsonl(qpath, Query))
    if not queries:  # written by an older version from an empty log
        raise ConfigError(f"{qpath} holds no queries: delete {out} and label again with a non-empty query source.")
    if not cpath.exists():
        write_jsonl(cpath, make_candidates(corpus, queries, cfgs["candidates"], progress))
    synthetic_queries(cfgs["queries"], lc.corpus, out, progress)  # LLM time too: made here, read by the retrain
    return out, list(read_jsonl(cpath, CandidateList))


def plan_lists(cfgs: dict, corpus, progress: bool = True, top_up: bool = False) -> tuple[list[CandidateList], dict]:
    """For a dry run, with no LLM call: the candidate lists the LLM would rank, and the question
    writing still to pay ({what: JobSize}). Queries the LLM has not written yet are planned on
    stand-ins about the same passages; `top_up`: price the retrain's top-up of a short log too."""
    from retriever_training.synthesize import stand_in_queries, synthesis_job

    qc, out = cfgs["queries"], labels_path(cfgs["label"])
    qpath, cpath = out / "queries.jsonl", out / "candidates.jsonl.gz"
    writing: dict = {}
    if qpath.exists():
        queries = list(read_jsonl(qpath, Query))
    elif qc.source == "synthesize":
        from retriever_training.queries import note_own_questions

        note_own_questions(cfgs["label"].corpus)
        n_passages = qc.synth_passages or qc.n
        writing["the queries to label"] = synthesis_job(corpus, n_passages, qc.seed)
        queries = stand_in_queries(corpus, n_passages, qc.seed)[:qc.n]
    else:
        queries = select_queries(qc, cfgs["label"].corpus)
    synthetic = qc.synthetic
    if top_up and qc.top_up_to:
        from retriever_training.queries import unlabelled_pool

        pool = unlabelled_pool(qc, cfgs["label"].corpus, {q.qid for q in queries}, cfgs["teacher"].unlabelled_queries)
        synthetic = max(synthetic, qc.top_up_to - len(queries) - len(pool))
    if synthetic > 0:
        per = qc.synth_per_passage
        writing["unlabelled queries"] = synthesis_job(corpus, -(-synthetic // per), qc.seed + 2, per)
    cands = (list(read_jsonl(cpath, CandidateList)) if qpath.exists() and cpath.exists()
             else make_candidates(corpus, queries, cfgs["candidates"], progress))
    return cands, writing


def plan_labelling(cfgs: dict, corpus, progress: bool = True, top_up: bool = False):
    """What labelling (and the question writing before it) would cost: the ledger of a dry run,
    its estimate in extra["estimate"] and the writing's in extra["writing"]. Nothing is written."""
    from rag.settings import runs_dir
    from retriever_training.label_cost import estimate
    from retriever_training.ranking import machine_ledgers

    cands, writing = plan_lists(cfgs, corpus, progress, top_up)
    ledger = rank_candidates(cands, corpus, cfgs["llm_rank"], labels_path(cfgs["label"]) / "rankings.jsonl",
                             progress=progress, dry_run=True, ledgers=machine_ledgers(runs_dir() / "labels"))
    est = ledger.extra.get("estimate", {})
    rate = None
    if est.get("tokens_per_s"):  # the embedded model's rate writes the questions too
        from retriever_training.label_cost import Rate

        rate = Rate(est["tokens_per_s"], 0.0, est["rate_source"])
    ledger.extra["writing"] = {what: estimate(job, rate) for what, job in writing.items()}
    return ledger


def run_labelling(cfgs: dict, dry_run: bool = False, progress: bool = True, corpus=None):
    from rag.corpus import load_corpus

    corpus = corpus or load_corpus(cfgs["label"].corpus)
    if not cfgs["label"].labels_dir:
        from retriever_training.recipe import resolve

        cfgs = resolve(cfgs, corpus)
    if dry_run:
        return plan_labelling(cfgs, corpus, progress)
    lc: LabelConfig = cfgs["label"]
    out, cands = prepare_lists(cfgs, progress, corpus)
    rankings = out / "rankings.jsonl"
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    from rag.settings import runs_dir
    from retriever_training.ranking import machine_ledgers

    ledger = rank_candidates(cands, corpus, cfgs["llm_rank"], rankings, progress=progress,
                             ledgers=machine_ledgers(runs_dir() / "labels"))
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
        "stopped": ledger.stopped,
        "first_started": prov.get("first_started", started), "last_updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # Relative paths only: the label set is committed and must not name this machine's folders.
        "config": {k: (asdict(v) if k != "label" else {**asdict(v), "labels_dir": _portable(out)})
                   for k, v in cfgs.items() if k in LABEL_SECTIONS},
    })
    write_json(prov_path, prov)
    return ledger


def _portable(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def _prompt_id(mode: str) -> str:
    from rag.prompts import QUERY_LIKELIHOOD, RANKING

    return (QUERY_LIKELIHOOD if mode == "query_likelihood" else RANKING[mode]).ref


def main(argv: list[str] | None = None) -> None:
    from rag.corpus import load_corpus
    from rag.settings import apply_offline_env
    from retriever_training.recipe import parse_command, resolve

    # Every section is read and checked, not only the labelling ones: a typo in a key the retrain
    # reads later must not pass here unnoticed.
    args, cfgs = parse_command(argv, "distilrag label", __doc__, [
        (("--dry-run",), {"action": "store_true", "help": "print pairs, tokens, time and cost; spend nothing"})])
    apply_offline_env()
    corpus = load_corpus(cfgs["label"].corpus)
    cfgs = resolve(cfgs, corpus)
    if note := ranker_llm_note(cfgs):
        print(note, flush=True)
    ledger = run_labelling(cfgs, dry_run=args.dry_run, corpus=corpus)
    where = labels_path(cfgs["label"])  # its rankings.ledger.json holds the whole ledger
    print(f"labels: {where}" + ("" if args.dry_run else f" (ledger: {where / 'rankings.ledger.json'})"))
    print(labelling_line(ledger, cfgs))


def labelling_line(ledger, cfgs: dict) -> str:
    """The last line of `label` (and of a retrain's labelling): the estimate, or how far it got."""
    from retriever_training.label_cost import cost_line, fmt_duration, synthesis_line

    if "estimate" in ledger.extra:
        writing = [synthesis_line(what, est) for what, est in ledger.extra.get("writing", {}).items()]
        return "\n".join([*writing, cost_line(ledger.extra["estimate"])])
    done = ledger.extra.get("already_done", 0) + ledger.queries_done
    why = {"budget": f"the budget of {cfg_minutes(cfgs)} min was spent",
           "max_queries": f"--max-queries {cfgs['llm_rank'].max_queries} reached"}.get(ledger.stopped)
    took = f"in {fmt_duration(ledger.seconds)}, {ledger.calls} pairs paid, {ledger.cache_hits} from the cache"
    if why:
        return (f"labelling stopped ({why}): {done} queries ranked {took}; the same command continues "
                "where it stopped")
    return f"labelling finished: {done} queries ranked {took}"


def ranker_llm_note(cfgs: dict) -> str | None:
    """A configured endpoint answers and writes questions, but the default labelling reads
    log-probs from the embedded model: say so before anything is paid, and how to rank with it."""
    from rag.llm import LLMConfig

    rc = cfgs["llm_rank"]
    if LLMConfig.from_env().is_local or rc.mode != "query_likelihood" or rc.ql_backend == "http":
        return None
    return ("note: the configured LLM endpoint writes questions and answers, but labelling ranks by the embedded "
            "model's query likelihood (the default, which needs prompt log-probs); to have the endpoint rank, "
            "add --llm_rank.mode=listwise (RankGPT) or --llm_rank.mode=pointwise, and price it with --dry-run")


def cfg_minutes(cfgs: dict) -> str:
    return f"{cfgs['llm_rank'].budget_minutes:g}"


if __name__ == "__main__":
    main()
