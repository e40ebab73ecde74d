"""Retraining: stages 1-7 from one config file, resumably.

    distilrag retrain --config retriever_training/configs/squad_dev.yaml [--force] [--section.key=value ...]

In:  the config (label, queries, candidates, llm_rank, ranker, teacher, distill, run sections)
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
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.records import CandidateList, LLMRanking, TeacherScores, read_jsonl, write_json, write_jsonl
from rag.settings import runs_dir
from retriever_training.distill import DistillConfig
from retriever_training.label import LABEL_SECTIONS
from retriever_training.score_teacher import TeacherConfig
from retriever_training.train_ranker import RankerConfig, RankerNotLearned, check_ranker


@dataclass(frozen=True)
class RunConfig:
    name: str = "squad_dev"
    unranked: str = "rank"   # rank: label what is missing first; skip: train on the ranked queries only
    force: bool = False      # publish even if the student is not better than the base on dev, and
                             # distil from a ranker that has not learned the LLM (train_ranker.check_ranker)
    set_default: bool = True  # make the published model what "distilled" means
    test_split: str = "test"  # the corpus's held-out split, reported in the model card with a paired
                              # bootstrap against the base ("" skips it; a corpus without it is skipped)


SECTIONS = {**LABEL_SECTIONS, "ranker": RankerConfig, "teacher": TeacherConfig, "distill": DistillConfig,
            "run": RunConfig}


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def unlabelled_lists(cfgs: dict, corpus, labelled: set[str], run_dir: Path, labels_dir: Path,
                     progress: bool = True):
    """Candidate lists for the queries the LLM never saw, further train-split queries and the
    synthetic ones (written once; the ranker scores them)."""
    from retriever_training.candidates import CandidatesConfig, make_candidates
    from retriever_training.queries import synthetic_queries, unlabelled_pool

    tc: TeacherConfig = cfgs["teacher"]
    path = run_dir / f"unlabelled_candidates_{fingerprint(asdict(tc), asdict(cfgs['queries']), asdict(cfgs['candidates']), sorted(labelled))}.jsonl.gz"
    if not path.exists():
        qc, corpus_name = cfgs["queries"], cfgs["label"].corpus
        extra = unlabelled_pool(qc, corpus_name, labelled, tc.unlabelled_queries) + \
            [q for q in synthetic_queries(qc, corpus_name, labels_dir, progress) if q.qid not in labelled]
        write_jsonl(path, make_candidates(corpus, extra, CandidatesConfig(cfgs["candidates"].retriever, tc.depth), progress))
    return list(read_jsonl(path, CandidateList))


def split_queries(corpus_name: str, split: str, qrels: dict) -> list:
    """The split's queries that have gold passages; none when the split is "" or the corpus lacks it."""
    from rag.corpus import CorpusError, load_queries

    if not split or not qrels:
        return []
    try:
        return [q for q in load_queries(corpus_name, split) if q.qid in qrels]
    except CorpusError:
        return []


def heldout_fp(student: Path, split: str, queries: list, corpus) -> str:
    from rag.embedder import weights_hash

    return fingerprint(weights_hash(student), split, sorted(q.qid for q in queries), corpus.hash)


def retrain(cfgs: dict, progress: bool = True) -> dict:
    from rag.corpus import load_corpus, load_qrels, load_queries
    from retriever_training.label import labels_path, prepare_lists, run_labelling
    from retriever_training.label_report import label_report

    run: RunConfig = cfgs["run"]
    corpus_name = cfgs["label"].corpus
    run_dir = runs_dir() / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {k: asdict(v) for k, v in cfgs.items()})
    stages = Stages(run_dir)
    timings: dict[str, float] = {}
    corpus = load_corpus(corpus_name)
    try:
        qrels = load_qrels(corpus_name)
    except Exception:  # a user's corpus may have no gold: every gold-based number is then omitted
        qrels = {}

    # 1-3: queries, candidates, LLM rankings (resumable on their own; the committed set is reused)
    t = time.perf_counter()
    labels_dir, cands = prepare_lists(cfgs, progress)
    rankings_path = labels_dir / "rankings.jsonl"
    ranked = {r["qid"] for r in read_jsonl(rankings_path)} if rankings_path.exists() else set()
    if len(ranked) < len(cands) and run.unranked == "rank":
        run_labelling(cfgs, progress=progress)
    rankings = [r for r in read_jsonl(rankings_path, LLMRanking)] if rankings_path.exists() else []
    if not rankings:
        raise RuntimeError(f"No LLM rankings in {rankings_path}: run `distilrag label --config ...` first.")
    report = label_report(rankings, cands, qrels)
    write_json(run_dir / "label_report.json", report)
    timings["labels"] = time.perf_counter() - t
    label_hash = file_hash(rankings_path)
    labelled = {r.qid for r in rankings}
    extra_lists = unlabelled_lists(cfgs, corpus, labelled, run_dir, labels_dir, progress)
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
    fp_t = fingerprint(asdict(cfgs["teacher"]), fp, asdict(cfgs["candidates"]), asdict(cfgs["queries"]))
    t = time.perf_counter()
    if not stages.done("teacher", fp_t, [teacher_path]):
        from sentence_transformers.cross_encoder import CrossEncoder

        from rag.settings import use_bf16
        from retriever_training.score_teacher import score_lists

        tc: TeacherConfig = cfgs["teacher"]
        lists = [c for c in cands if c.qid in labelled] + extra_lists
        ranker = CrossEncoder(str(ranker_dir))
        write_jsonl(teacher_path, score_lists(ranker, lists, corpus, labelled, f"ranker:{fp}", tc.depth,
                                              tc.batch_size, progress, use_bf16(tc.precision)))
        stages.mark("teacher", fp_t, time.perf_counter() - t)
    timings["teacher"] = time.perf_counter() - t
    scores = list(read_jsonl(teacher_path, TeacherScores))

    # 6: distillation
    student = run_dir / "student"
    fp_d = fingerprint(asdict(cfgs["distill"]), file_hash(teacher_path))
    t = time.perf_counter()
    if not stages.done("distill", fp_d, [student, run_dir / "distill_metrics.json"]):
        from retriever_training.distill import dev_subset, distill

        dc: DistillConfig = cfgs["distill"]
        dev = dev_subset(load_queries(corpus_name, "dev"), dc.dev_queries, dc.seed)
        write_json(run_dir / "distill_metrics.json",
                   distill(dc, scores, queries, corpus, dev, qrels, student))
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
        "ranker": {"loss": cfgs["ranker"].loss, "checkpoint": str(ranker_dir.relative_to(run_dir)),
                   **json.loads((run_dir / "ranker_metrics.json").read_text())},
        "distill": json.loads((run_dir / "distill_metrics.json").read_text()),
        "heldout": json.loads(heldout_path.read_text()) if test_queries else {},
        "ledger": json.loads(ledger_path.read_text()).get("total", {}) if ledger_path.exists() else {},
        "config": {k: asdict(v) for k, v in cfgs.items()}, "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    out = publish(run_dir, card, force=run.force, make_default=run.set_default)
    metrics = {"label_report": report, "ranker": card["ranker"], "distill": card["distill"],
               "timings_s": card["timings_s"], "model": str(out),
               # read by the evaluation report's label-efficiency curve
               "n_labels": min(len(rankings), cfgs["ranker"].max_queries or len(rankings)),
               "dev": card["distill"].get("best_dev", {}), "heldout": card["heldout"]}
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    import argparse

    from rag.config import load_sections
    from rag.settings import apply_offline_env, set_torch_threads

    ap = argparse.ArgumentParser(prog="distilrag retrain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML with one mapping per stage")
    ap.add_argument("--force", action="store_true", help="go on past the ranker check, publish even if not better than the base on dev")
    args, overrides = ap.parse_known_args(argv)
    apply_offline_env()
    set_torch_threads()
    if args.force:
        overrides = [*overrides, "run.force=true"]
    cfgs = load_sections(args.config, SECTIONS, overrides)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
