"""Retraining: stages 1-7 from one config file, resumably.

    distilrag retrain --corpus my_docs/ [--queries my_questions.txt] [--force] [--section.key=value ...]
    distilrag retrain --config retriever_training/configs/squad_dev.yaml [--force] [--section.key=value ...]

In:  the config (label, queries, candidates, llm_rank, ranker, teacher, distill, run sections; the
     defaults are the recipe, see recipe.py); what this input cannot run is reported before any
     labelling or training (splits.preflight)
Out: runs/<run.name>/ — config.json (resolved), label_report.json, ranker/, ranker_metrics.json,
     teacher_scores.jsonl.gz, student/, distill_metrics.json, heldout_metrics.json (test split vs
     base), metrics.json, model/ (published)
A stage whose recorded fingerprint (its config plus its inputs' hashes) is unchanged and whose
outputs exist is skipped, so an interrupted retrain resumes at the stage it was in.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

from rag.errors import UserError
from rag.records import CandidateList, LLMRanking, Query, TeacherScores, read_jsonl, write_json, write_jsonl
from rag.settings import runs_dir
from retriever_training.distill import DistillConfig
from retriever_training.recipe import SECTIONS, RunConfig, check_config, fingerprint, resolve  # noqa: F401
from retriever_training.score_teacher import TeacherConfig
from retriever_training.splits import split_queries  # noqa: F401  (imported from here by callers)
from retriever_training.train_ranker import RankerNotLearned, check_ranker


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class Stages:
    """Skip-if-done bookkeeping in <run>/stages/<stage>.json."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "stages"

    def done(self, stage: str, fp: str, outputs: list[Path]) -> bool:
        f = self.dir / f"{stage}.json"
        return f.exists() and json.loads(f.read_text()).get("fingerprint") == fp and all(p.exists() for p in outputs)

    def mark(self, stage: str, fp: str, seconds: float) -> None:
        write_json(self.dir / f"{stage}.json", {"fingerprint": fp, "seconds": round(seconds, 1),
                                                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})


def unlabelled_queries(cfgs: dict, exclude: set[str], labels_dir: Path,
                       progress: bool = True) -> tuple[list[Query], list[Query]]:
    """(the rest of the log or split, synthetic queries) that the LLM never saw: `exclude` holds
    every query it was given, labelled or held out."""
    from retriever_training.queries import synthetic_queries, unlabelled_pool

    qc, corpus_name = cfgs["queries"], cfgs["label"].corpus
    pool = unlabelled_pool(qc, corpus_name, exclude, cfgs["teacher"].unlabelled_queries)
    taken = exclude | {q.qid for q in pool}
    return pool, [q for q in synthetic_queries(qc, corpus_name, labels_dir, progress) if q.qid not in taken]


def unlabelled_lists(cfgs: dict, corpus, extra: list[Query], run_dir: Path, progress: bool = True):
    """Candidate lists of the unlabelled queries (written once; the ranker scores them)."""
    from retriever_training.candidates import CandidatesConfig, make_candidates

    tc: TeacherConfig = cfgs["teacher"]
    key = fingerprint(asdict(tc), asdict(cfgs["candidates"]), corpus.hash, [(q.qid, q.query) for q in extra])
    path = run_dir / f"unlabelled_candidates_{key}.jsonl.gz"
    if not path.exists():
        cc = CandidatesConfig(cfgs["candidates"].retriever, tc.depth)
        write_jsonl(path, make_candidates(corpus, extra, cc, progress))
    return list(read_jsonl(path, CandidateList))


def heldout_fp(student: Path, split: str, queries: list, corpus) -> str:
    from rag.embedder import weights_hash

    return fingerprint(weights_hash(student), split, sorted(q.qid for q in queries), corpus.hash)


class NoRankings(UserError, RuntimeError):
    pass


def retrain(cfgs: dict, progress: bool = True) -> dict:
    from rag.corpus import load_corpus, load_qrels
    from retriever_training.label import prepare_lists, run_labelling
    from retriever_training.label_report import label_report
    from retriever_training.splits import check_selected, heldout_ids, preflight, teacher_lists

    check_config(cfgs)
    corpus = load_corpus(cfgs["label"].corpus)
    cfgs = resolve(cfgs, corpus)
    run: RunConfig = cfgs["run"]
    corpus_name = cfgs["label"].corpus
    try:
        qrels = load_qrels(corpus_name)
    except Exception:  # a user's corpus may have no gold: every gold-based number is then omitted
        qrels = {}
    plan = preflight(cfgs, qrels)  # what cannot run on this input fails here, before any LLM or training time
    if progress:
        if plan["dev"] == "heldout":
            print(f"note: corpus {corpus_name!r} has no gold dev split: the checkpoint is chosen, and the base "
                  "compared, on the held-out labelled queries against the LLM's order", flush=True)
        if run.test_split and not plan["test"]:
            print(f"note: corpus {corpus_name!r} has no gold {run.test_split!r} split: no held-out gold report",
                  flush=True)
    run_dir = runs_dir() / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {k: asdict(v) for k, v in cfgs.items()})
    stages = Stages(run_dir)
    timings: dict[str, float] = {}

    # 1-3: queries, candidates, LLM rankings (resumable on their own; the committed set is reused)
    t = time.perf_counter()
    labels_dir, cands = prepare_lists(cfgs, progress, corpus)
    check_selected(cfgs, cands, plan)
    rankings_path = labels_dir / "rankings.jsonl"
    ranked = {r["qid"] for r in read_jsonl(rankings_path)} if rankings_path.exists() else set()
    if len(ranked) < len(cands) and run.unranked == "rank":
        run_labelling(cfgs, progress=progress, corpus=corpus)
    rankings = [r for r in read_jsonl(rankings_path, LLMRanking)] if rankings_path.exists() else []
    if not rankings:
        raise NoRankings(f"No LLM rankings in {rankings_path}: run `distilrag label` with the same settings "
                         "first, or --run.unranked=rank.")
    timings["labels"] = time.perf_counter() - t
    label_hash = file_hash(rankings_path)
    labelled = {r.qid for r in rankings}
    heldout = heldout_ids(labelled, cfgs["ranker"].heldout_fraction)
    log_rest, synthetic = unlabelled_queries(cfgs, labelled | {c.qid for c in cands}, labels_dir, progress)
    extra_lists = unlabelled_lists(cfgs, corpus, [*log_rest, *synthetic], run_dir, progress)
    used = {"labelled": len(labelled), "heldout": len(heldout), "labelled_for_training": len(labelled - heldout),
            "unlabelled_from_log": len(log_rest), "unlabelled_synthetic": len(synthetic), "dev": plan["dev"]}
    report = {**label_report(rankings, cands, qrels), "used": used}
    write_json(run_dir / "label_report.json", report)
    # Query text travels with every candidate list: one lookup for labelled and unlabelled queries.
    queries = {cl.qid: cl.query for cl in [*cands, *extra_lists]}

    # 4: ranker
    ranker_dir = run_dir / "ranker"
    list_size = cfgs["ranker"].list_size or cfgs["teacher"].depth
    fp = fingerprint(asdict(cfgs["ranker"]), list_size, label_hash, corpus.hash)
    t = time.perf_counter()
    if not stages.done("ranker", fp, [ranker_dir, run_dir / "ranker_metrics.json"]):
        from retriever_training.train_ranker import agreement, ranker_epochs, train_ranker

        model, train, heldout = train_ranker(cfgs["ranker"], rankings, queries, corpus, ranker_dir, list_size)
        write_json(run_dir / "ranker_metrics.json",
                   {"loss": cfgs["ranker"].loss, "list_size": list_size, "train_queries": len(train),
                    "epochs": ranker_epochs(cfgs["ranker"], len(train)),
                    **agreement(model, heldout, queries, corpus, qrels)})
        stages.mark("ranker", fp, time.perf_counter() - t)
    timings["ranker"] = time.perf_counter() - t
    check_ranker(json.loads((run_dir / "ranker_metrics.json").read_text()), run.force)

    # 5: teacher scores for labelled + unlabelled queries
    teacher_path = run_dir / "teacher_scores.jsonl.gz"
    lists = teacher_lists(cands, extra_lists, labelled, heldout)  # never a held-out query
    fp_t = fingerprint(asdict(cfgs["teacher"]), fp, asdict(cfgs["candidates"]), asdict(cfgs["queries"]),
                       [c.qid for c in lists])
    t = time.perf_counter()
    if not stages.done("teacher", fp_t, [teacher_path]):
        from sentence_transformers.cross_encoder import CrossEncoder

        from rag.settings import use_bf16
        from retriever_training.score_teacher import score_lists

        tc: TeacherConfig = cfgs["teacher"]
        ranker = CrossEncoder(str(ranker_dir))
        write_jsonl(teacher_path, score_lists(ranker, lists, corpus, labelled, f"ranker:{fp}", tc.depth,
                                              tc.batch_size, progress, use_bf16(tc.precision)))
        stages.mark("teacher", fp_t, time.perf_counter() - t)
    timings["teacher"] = time.perf_counter() - t
    scores = list(read_jsonl(teacher_path, TeacherScores))

    # 6: distillation
    student = run_dir / "student"
    dc: DistillConfig = cfgs["distill"]
    from retriever_training.splits import dev_set

    dev, dev_qrels, dev_source = dev_set(corpus_name, qrels, [r for r in rankings if r.qid in heldout], queries,
                                         dc.dev_queries, dc.seed)
    fp_d = fingerprint(asdict(dc), file_hash(teacher_path), dev_source, sorted(q.qid for q in dev))
    t = time.perf_counter()
    if not stages.done("distill", fp_d, [student, run_dir / "distill_metrics.json"]):
        from retriever_training.distill import distill

        metrics = distill(dc, scores, queries, corpus, dev, dev_qrels, student)
        write_json(run_dir / "distill_metrics.json", {**metrics, "dev_source": dev_source})
        stages.mark("distill", fp_d, time.perf_counter() - t)
    timings["distill"] = time.perf_counter() - t

    # 6b: base vs distilled on the held-out split (reported, never used to choose anything)
    heldout_path = run_dir / "heldout_metrics.json"
    test_queries = split_queries(corpus_name, run.test_split, qrels)
    t = time.perf_counter()
    # keyed by the student's own weights, not only fp_d: a student retrained in place is measured again
    fp_h = heldout_fp(student, run.test_split, test_queries, corpus) if test_queries else ""
    if test_queries and not stages.done("heldout", fp_h, [heldout_path]):
        from rag.models import base_embedder_path
        from retriever_training.heldout import heldout_report
        from rag.settings import use_bf16

        dc = cfgs["distill"]
        write_json(heldout_path, heldout_report(student, str(base_embedder_path()), corpus, test_queries, qrels,
                                                run.test_split, dc.max_seq_length, use_bf16(dc.precision)))
        stages.mark("heldout", fp_h, time.perf_counter() - t)
    timings["heldout"] = time.perf_counter() - t

    # 7: publish
    from retriever_training.publish import publish

    ledger_path = labels_dir / "rankings.ledger.json"
    prov_path = labels_dir / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    card = {
        "name": f"distilrag-{run.name}", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "corpus": corpus_name,
        "teacher": {"model": prov.get("teacher_model"), "model_sha256": prov.get("teacher_model_sha256"),
                    "mode": prov.get("mode"), "prompt_id": prov.get("prompt_id"), "queries": len(rankings),
                    "label_set_sha256": label_hash, "label_report": report},
        "queries_used": used,
        "ranker": {"loss": cfgs["ranker"].loss, "checkpoint": str(ranker_dir.relative_to(run_dir)),
                   **json.loads((run_dir / "ranker_metrics.json").read_text())},
        "distill": json.loads((run_dir / "distill_metrics.json").read_text()),
        "heldout": json.loads(heldout_path.read_text()) if test_queries else {},
        "ledger": json.loads(ledger_path.read_text()).get("total", {}) if ledger_path.exists() else {},
        "config": {k: asdict(v) for k, v in cfgs.items()}, "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    out = publish(run_dir, card, force=run.force, make_default=run.set_default)
    metrics = {"label_report": report, "queries_used": used, "ranker": card["ranker"], "distill": card["distill"],
               "timings_s": card["timings_s"], "model": str(out),
               # read by the evaluation report's label-efficiency curve
               "n_labels": min(len(rankings), cfgs["ranker"].max_queries or len(rankings)),
               "dev": card["distill"].get("best_dev", {}), "heldout": card["heldout"]}
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    from dataclasses import replace

    from rag.settings import apply_offline_env, set_torch_threads
    from retriever_training.recipe import parse_command

    args, cfgs = parse_command(argv, "distilrag retrain", __doc__, [
        (("--force",), {"action": "store_true",
                        "help": "go on past the ranker check, publish even if not better than the base on dev"})])
    if args.force:
        cfgs = {**cfgs, "run": replace(cfgs["run"], force=True)}
    apply_offline_env()
    set_torch_threads()
    from retriever_training.publish import NotBetterThanBase

    try:
        metrics = retrain(cfgs)
    except NotBetterThanBase as e:
        print(f"not published: {e}")
        return 3
    except RankerNotLearned as e:
        print(f"stopped after the ranker stage: {e}")
        return 4
    print(json.dumps({"model": metrics["model"], "dev": metrics["distill"].get("best_dev"),
                      "base_dev": metrics["distill"].get("base_dev")}, indent=1))
    print(queries_line(metrics["queries_used"]))
    return 0


def queries_line(used: dict) -> str:
    dev = ("the corpus's dev split" if used["dev"] == "split"
           else "the held-out labelled queries, against the LLM's order")
    return (f"queries: {used['labelled']} labelled by the LLM ({used['heldout']} held out, never trained on), "
            f"{used['unlabelled_from_log']} further from the log and {used['unlabelled_synthetic']} synthetic "
            f"scored by the ranker only; checkpoint chosen on {dev}")


if __name__ == "__main__":
    raise SystemExit(main())
