"""Retraining: stages 1-7 from one config file, resumably.

    distilrag retrain --corpus my_docs/ [--queries my_questions.txt] [--qrels gold.tsv] [--force] [--dry-run]
                      [--budget-minutes M] [--max-queries N] [--section.key=value ...]
    distilrag retrain --config retriever_training/configs/squad_dev.yaml [--force] [--section.key=value ...]

In:  the config (label, queries, candidates, llm_rank, ranker, teacher, distill, run sections; the
     defaults are the recipe, see recipe.py); what this input cannot run is reported before any
     labelling or training (splits.preflight)
Out: runs/<run.name>/ — config.json (resolved), label_report.json, ranker/, ranker_metrics.json,
     teacher_scores.jsonl.gz, student/, distill_metrics.json, heldout_metrics.json (gold test split
     vs base), verdict.json (held-out labelled queries: base vs distilled and every pipeline ranked,
     verdict.py), metrics.json (with `pipelines` and `best`), model/ (published when the verdict
     says it beats the base, publish.gate; --force publishes anyway)
--dry-run prints what labelling is left to pay and its estimated time, then the training stages'
estimated time (train_cost.py), and stops. A labelling
stopped by --budget-minutes / --max-queries trains on the queries ranked so far and says how many.
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
from retriever_training.train_ranker import check_ranker


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


def unlabelled_queries(cfgs: dict, exclude: set[str], labels_dir: Path, progress: bool = True,
                       exclude_texts: set[str] = frozenset()) -> tuple[list[Query], list[Query]]:
    """(the rest of the log or split, synthetic queries) that the LLM never saw: `exclude` holds
    every query it was given, labelled or held out. Synthetic: queries.synthetic, or as many as
    bring a short log up to queries.top_up_to queries in all, whichever is more."""
    from dataclasses import replace

    from retriever_training.queries import synthetic_queries, unlabelled_pool

    qc, corpus_name = cfgs["queries"], cfgs["label"].corpus
    pool = unlabelled_pool(qc, corpus_name, exclude, cfgs["teacher"].unlabelled_queries, exclude_texts)
    taken = exclude | {q.qid for q in pool}
    qc = replace(qc, synthetic=max(qc.synthetic, qc.top_up_to - len(taken)))
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


def load_gold(corpus_name: str, qrels_file: str) -> dict:
    """The corpus's gold qrels, and a --qrels file's over them ({} when there is none)."""
    from rag.corpus import CorpusError, load_qrels
    from rag.metrics import read_qrels

    try:
        qrels = load_qrels(corpus_name)
    except CorpusError:  # a user's corpus may have no gold: every gold-based number is then omitted
        qrels = {}
    if qrels_file:  # a bad file is a UserError naming it and the formats
        qrels = {**qrels, **read_qrels(qrels_file)}
    return qrels


def retrain(cfgs: dict, progress: bool = True, dry_run: bool = False) -> dict:
    from rag.config import ConfigError
    from rag.corpus import load_corpus
    from retriever_training.label import prepare_lists, run_labelling
    from retriever_training.label_report import label_report
    from retriever_training.splits import check_selected, heldout_ids, preflight, teacher_lists

    check_config(cfgs)
    corpus = load_corpus(cfgs["label"].corpus)
    cfgs = resolve(cfgs, corpus)
    run: RunConfig = cfgs["run"]
    corpus_name = cfgs["label"].corpus
    qrels = load_gold(corpus_name, run.qrels)
    plan = preflight(cfgs, qrels)  # what cannot run on this input fails here, before any LLM or training time
    if progress:
        if plan["dev"] == "heldout":
            print(f"note: corpus {corpus_name!r} has no gold dev split: the checkpoint is chosen, and the base "
                  "compared, on the held-out labelled queries against the LLM's order", flush=True)
        if run.test_split and not plan["test"]:
            print(f"note: corpus {corpus_name!r} has no gold {run.test_split!r} split: no held-out gold report",
                  flush=True)
        from retriever_training.label import ranker_llm_note
        from retriever_training.verdict import MIN_VERDICT_QUERIES

        if note := ranker_llm_note(cfgs):
            print(note, flush=True)

        held = round(plan["labelled_planned"] * cfgs["ranker"].heldout_fraction)
        if held < MIN_VERDICT_QUERIES and not plan["test"] and not run.force:
            print(f"warning: about {held} of the {plan['labelled_planned']} labelled queries will be held out to "
                  f"judge the result, fewer than the {MIN_VERDICT_QUERIES} a verdict needs: a tie or a small "
                  "loss there stops the publish. Label more (--queries.n) or plan on --force.", flush=True)
    run_dir = runs_dir() / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {k: asdict(v) for k, v in cfgs.items()})
    stages = Stages(run_dir)
    timings: dict[str, float] = {}

    if dry_run:  # before any query is written: the LLM writing them is a cost the dry run prices
        from retriever_training.label import labelling_line, plan_labelling
        from retriever_training.train_cost import training_estimate

        ledger = plan_labelling(cfgs, corpus, progress, top_up=True)
        training = training_estimate(cfgs, plan, corpus, runs_dir())
        if progress:
            print(labelling_line(ledger, cfgs), flush=True)
            print(training["line"], flush=True)
        return {"dry_run": ledger.extra.get("estimate", {}), "writing": ledger.extra.get("writing", {}),
                "training": training}

    # 1-3: queries, candidates, LLM rankings (resumable on their own; the committed set is reused)
    t = time.perf_counter()
    labels_dir, cands = prepare_lists(cfgs, progress, corpus)
    check_selected(cfgs, cands, plan)
    rankings_path = labels_dir / "rankings.jsonl"
    ranked = {r["qid"] for r in read_jsonl(rankings_path)} if rankings_path.exists() else set()
    if len(ranked) < len(cands) and run.unranked == "rank":
        from retriever_training.label import labelling_line

        ledger = run_labelling(cfgs, progress=progress, corpus=corpus)
        if progress:
            print(labelling_line(ledger, cfgs), flush=True)
    rankings = [r for r in read_jsonl(rankings_path, LLMRanking)] if rankings_path.exists() else []
    if not rankings:
        raise NoRankings(f"No LLM rankings in {rankings_path}: run `distilrag label` with the same settings "
                         "first, or --run.unranked=rank.")
    timings["labels"] = time.perf_counter() - t
    label_hash = file_hash(rankings_path)
    labelled = {r.qid for r in rankings}
    heldout = heldout_ids(labelled, cfgs["ranker"].heldout_fraction)
    if plan["dev"] == "heldout" and not heldout:  # a labelling stopped early can leave none
        raise ConfigError(f"none of the {len(labelled)} ranked queries is held out, and this corpus has no gold "
                          "dev split to judge the student on: label more (a larger --budget-minutes or "
                          "--max-queries; the same command continues) or raise --ranker.heldout_fraction")
    if progress and len(labelled) < len(cands):
        print(f"training on the {len(labelled)} of {len(cands)} selected queries the LLM has ranked "
              "(the rest: run the same command again to label them)", flush=True)
    log_rest, synthetic = unlabelled_queries(cfgs, labelled | {c.qid for c in cands}, labels_dir, progress,
                                             {c.query for c in cands})
    extra_lists = unlabelled_lists(cfgs, corpus, [*log_rest, *synthetic], run_dir, progress)
    used = {"selected": len(cands), "labelled": len(labelled), "heldout": len(heldout), "labelled_for_training": len(labelled - heldout),
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
        from retriever_training.ddp import run_stage
        from retriever_training.train_ranker import agreement, ranker_epochs

        model, train, held_rankings = run_stage("ranker", (cfgs["ranker"], rankings, queries, corpus, ranker_dir,
                                                           list_size), run_dir, run.nproc)
        if model is None:  # trained under torchrun: the saved one
            from sentence_transformers.cross_encoder import CrossEncoder

            model = CrossEncoder(str(ranker_dir))
        write_json(run_dir / "ranker_metrics.json",
                   {"loss": cfgs["ranker"].loss, "list_size": list_size, "train_queries": len(train),
                    "epochs": ranker_epochs(cfgs["ranker"], len(train)),
                    **agreement(model, held_rankings, queries, corpus, qrels)})
        stages.mark("ranker", fp, time.perf_counter() - t)
    timings["ranker"] = time.perf_counter() - t
    # a warning, not a stop: one noisy statistic over a few dozen queries; the verdict decides publishing
    check_ranker(json.loads((run_dir / "ranker_metrics.json").read_text()))

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
        from retriever_training.ddp import run_stage

        metrics = run_stage("distill", (dc, scores, queries, corpus, dev, dev_qrels, student), run_dir, run.nproc)
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

    # 6c: the verdict on the held-out labelled queries: base vs distilled, and every pipeline ranked
    verdict_path = run_dir / "verdict.json"
    held_rankings = [r for r in rankings if r.qid in heldout]
    gold_held = {r.qid: qrels[r.qid] for r in held_rankings if r.qid in qrels}
    t = time.perf_counter()
    from retriever_training.verdict import JUDGING, judge, pipeline_orders, pipeline_specs, ranking_qrels

    fp_v = fingerprint(heldout_fp(student, "verdict", held_rankings, corpus), fp, label_hash,
                       sorted(gold_held.items()), JUDGING)  # fp: the ranker's config and labels
    if held_rankings and not stages.done("verdict", fp_v, [verdict_path]):
        specs, base_spec, student_spec = pipeline_specs(run_dir)
        latency: dict = {}
        _, judge_qrels, judged = ranking_qrels(held_rankings, gold_held)
        orders = pipeline_orders(specs, corpus, {r.qid: queries[r.qid] for r in held_rankings}, progress=progress,
                                 latency_ms=latency, qrels=judge_qrels, judged=judged)
        write_json(verdict_path, judge(orders, held_rankings, base_spec, student_spec, gold_held, latency))
        stages.mark("verdict", fp_v, time.perf_counter() - t)
    timings["verdict"] = time.perf_counter() - t
    verdict = json.loads(verdict_path.read_text()) if held_rankings and verdict_path.exists() else {}
    if verdict:
        from rag.pipelines import published_name

        verdict["best_published"] = published_name(verdict["best"])

    # 7: publish
    from retriever_training.publish import publish

    ledger_path = labels_dir / "rankings.ledger.json"
    prov_path = labels_dir / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    from rag.records import ModelCard

    card = ModelCard(
        name=f"distilrag-{run.name}", created=time.strftime("%Y-%m-%dT%H:%M:%S"), corpus=corpus_name,
        teacher={"model": prov.get("teacher_model"), "model_sha256": prov.get("teacher_model_sha256"),
                 "mode": prov.get("mode"), "prompt_id": prov.get("prompt_id"), "queries": len(rankings),
                 "label_set_sha256": label_hash, "label_report": report},
        queries_used=used,
        ranker={"loss": cfgs["ranker"].loss, "checkpoint": str(ranker_dir.relative_to(run_dir)),
                **json.loads((run_dir / "ranker_metrics.json").read_text())},
        distill=json.loads((run_dir / "distill_metrics.json").read_text()),
        heldout=json.loads(heldout_path.read_text()) if test_queries else {},
        verdict=verdict,
        ledger=json.loads(ledger_path.read_text()).get("total", {}) if ledger_path.exists() else {},
        config={k: asdict(v) for k, v in cfgs.items()}, timings_s={k: round(v, 1) for k, v in timings.items()})
    from retriever_training.publish import gate
    from retriever_training.verdict import sentence

    metrics = {"label_report": report, "queries_used": used, "ranker": card.ranker, "distill": card.distill,
               "timings_s": card.timings_s, "model": None,
               # read by the evaluation report's label-efficiency curve
               "n_labels": min(len(rankings), cfgs["ranker"].max_queries or len(rankings)),
               "dev": card.distill.get("best_dev", {}), "heldout": card.heldout,
               "verdict": {k: v for k, v in verdict.items() if k != "pipelines"},
               "pipelines": verdict.get("pipelines", []), "best": verdict.get("best"),
               "best_published": verdict.get("best_published")}
    why = gate(card)
    outcome = "not published" if why and not run.force else "published with --force" if why else "published"
    metrics["verdict_sentence"] = sentence(verdict, outcome, card.heldout)
    from retriever_training.train_cost import recorded_work

    # what the stages cost here, next to their timings: the next dry run on this machine prices by it
    metrics.update(recorded_work(cfgs, corpus, used, len(scores), len(test_queries)))
    out = publish(run_dir, card, force=run.force, make_default=run.set_default)  # a refusal: verdict.json has it all
    metrics["model"] = str(out)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    from dataclasses import replace

    from rag.settings import apply_offline_env, set_torch_threads
    from retriever_training.recipe import parse_command

    args, cfgs = parse_command(argv, "distilrag retrain", __doc__, [
        (("--force",), {"action": "store_true",
                        "help": "publish even if the verdict says the student is not better than the base"}),
        (("--dry-run",), {"action": "store_true", "help": "print what labelling is left to pay, its "
                                                          "estimated time and the training stages' on this machine; train nothing"}),
        (("--qrels",), {"default": None, "help": "gold qrels (qid 0 docid rel): the verdict is also reported "
                                                 "against them (run.qrels)"})])
    if args.force:
        cfgs = {**cfgs, "run": replace(cfgs["run"], force=True)}
    if args.qrels:
        cfgs = {**cfgs, "run": replace(cfgs["run"], qrels=args.qrels)}
    apply_offline_env()
    set_torch_threads()
    from retriever_training.publish import NotBetterThanBase
    from retriever_training.verdict import pipelines_line

    try:
        metrics = retrain(cfgs, dry_run=args.dry_run)
    except NotBetterThanBase as e:
        print(f"not published: {e}")
        print(e.sentence)
        if e.served:
            print(e.served)
        return 3
    if args.dry_run:
        return 0
    print(json.dumps({"model": metrics["model"], "dev": metrics["distill"].get("best_dev"),
                      "base_dev": metrics["distill"].get("base_dev"), "best": metrics.get("best_published")},
                     indent=1))
    print(queries_line(metrics["queries_used"]))
    if metrics.get("pipelines"):
        print(pipelines_line(metrics))
    print(metrics["verdict_sentence"])
    return 0


def queries_line(used: dict) -> str:
    dev = ("the corpus's dev split" if used["dev"] == "split"
           else "the held-out labelled queries, against the LLM's order")
    of = f" of {used['selected']} selected" if used.get("selected", used["labelled"]) > used["labelled"] else ""
    return (f"queries: {used['labelled']}{of} labelled by the LLM ({used['heldout']} held out, never trained on), "
            f"{used['unlabelled_from_log']} further from the log and {used['unlabelled_synthetic']} synthetic "
            f"scored by the ranker only; checkpoint chosen on {dev}")


if __name__ == "__main__":
    raise SystemExit(main())
