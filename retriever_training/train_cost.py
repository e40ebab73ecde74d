"""What the stages after labelling will cost on this machine: the dry run's last line.

    distilrag retrain --corpus my_docs/ --queries my_questions.txt --dry-run

In:  the resolved config, the planned query counts (splits.preflight), the corpus; the timings and
     work of earlier retrains on this machine (runs/*/metrics.json: timings_s, training_work)
Out: `training_estimate` (the dry run's {stage: seconds} and its line), `recorded_work` (the
     MiniLM tokens each stage pushed through a model and this machine's id, kept in every
     retrain's metrics.json beside its timings)

A stage's time is its tokens times a cost per token, fitted on finished retrains on 2 quiet CPU
cores (bf16; benchmarks/train_cost.py sets each estimate beside the real time, docs/guide.md quotes
it). Where earlier retrains on this machine recorded their work, the costs are scaled by how fast
they really were (machine_speed), so another CPU or a GPU is priced right from its second retrain on.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

US_PER_TOKEN = {"ranker": 205.0, "teacher": 70.0, "distill": 90.0, "verdict": 62.0}
QUERY_TOKENS = 14       # a question in MiniLM word pieces, with its special tokens
VERDICT_RERANKED = 80   # pairs the verdict's ranker pipelines score per held-out query (top 20, 4 of them)
SAMPLE_PASSAGES = 2000  # passages tokenized to find the mean length
MIN_STAGE_S = 5.0       # a recorded stage shorter than this was skipped (resumed), not run
MIN_COVERAGE = 0.5      # a run is this machine's speed sample when it ran this share of its work
SPEED_RUNS = 5          # the latest this many samples


@dataclass(frozen=True)
class TrainingSize:
    passages: int
    passage_tokens: float   # mean MiniLM word pieces per passage, title included
    train_queries: int      # labelled, not held out: the ranker's
    student_queries: int    # the labelled ones plus the ranker-scored rest
    heldout: int            # the verdict's
    test_queries: int = 0   # a gold test split's (the held-out report)


def mean_passage_tokens(corpus, seed: int = 0) -> float:
    from rag.corpus import passage_text
    from rag.models import base_embedder_path

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_embedder_path()))
    ps = corpus.passages
    sample = random.Random(seed).sample(ps, SAMPLE_PASSAGES) if len(ps) > SAMPLE_PASSAGES else ps
    # cut at 512: no stage reads more, and the tokenizer warns about longer ones
    lengths = [len(ids) for ids in tok([passage_text(p) for p in sample], truncation=True, max_length=512)["input_ids"]]
    return sum(lengths) / max(1, len(lengths))


def planned_size(cfgs: dict, plan: dict, corpus, passage_tokens: float) -> TrainingSize:
    """The counts a retrain will train on, from the plan before labelling (splits.preflight)."""
    n, qc = plan["labelled_planned"], cfgs["queries"]
    held = round(n * cfgs["ranker"].heldout_fraction)
    log_rest = min(cfgs["teacher"].unlabelled_queries, max(0, plan.get("pool", n) - n))
    synthetic = max(qc.synthetic, qc.top_up_to - n - log_rest)
    return TrainingSize(len(corpus), passage_tokens, n - held, n - held + log_rest + synthetic, held,
                        plan.get("test_queries", 0))


def training_work(cfgs: dict, s: TrainingSize) -> dict[str, float]:
    from retriever_training.train_ranker import ranker_epochs

    rc, tc, dc = cfgs["ranker"], cfgs["teacher"], cfgs["distill"]
    pair = min(s.passage_tokens, rc.max_length) + QUERY_TOKENS
    embed = s.passages * min(s.passage_tokens, dc.max_seq_length)  # one pass of a bi-encoder over the corpus
    return {"ranker": s.train_queries * (rc.list_size or tc.depth) * ranker_epochs(rc, s.train_queries) * pair,
            "teacher": s.student_queries * tc.depth * pair,
            # the student's lists each epoch, and the corpus embedded for the base and after each epoch
            "distill": (s.student_queries * dc.epochs * (dc.docs_per_query * min(s.passage_tokens, dc.max_seq_length)
                                                         + QUERY_TOKENS) + embed * (dc.epochs + 1)),
            # base and distilled embed the corpus (twice more for a gold test split), the ranker reranks
            "verdict": embed * (2 + 2 * bool(s.test_queries)) + s.heldout * VERDICT_RERANKED * pair}


def machine_speed(runs: Path, machine: str) -> tuple[float, str]:
    """(real / fitted time, where from): the median over the latest retrains on this machine that
    recorded their work and ran most of it (a resumed run that redid one stage, perhaps beside
    another job, says little)."""
    ratios = []
    for path in runs.glob("*/metrics.json"):
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        work, took = m.get("training_work") or {}, m.get("timings_s") or {}
        if m.get("machine") != machine or set(work) != set(US_PER_TOKEN):
            continue
        fitted = {s: work[s] * US_PER_TOKEN[s] / 1e6 for s in US_PER_TOKEN}
        ran = [s for s in US_PER_TOKEN if took.get(s, 0) >= MIN_STAGE_S]
        if ran and sum(fitted[s] for s in ran) >= MIN_COVERAGE * sum(fitted.values()):
            ratios.append((path.stat().st_mtime, sum(took[s] for s in ran) / sum(fitted[s] for s in ran)))
    recent = [r for _, r in sorted(ratios)[-SPEED_RUNS:]]
    if not recent:
        return 1.0, "costs measured on 2 CPU cores"
    recent.sort()
    mid = len(recent) // 2
    median = recent[mid] if len(recent) % 2 else (recent[mid - 1] + recent[mid]) / 2
    return median, f"{len(recent)} earlier retrain{'s' * (len(recent) > 1)} on this machine"


def estimate_training(work: dict[str, float], speed: float) -> dict[str, float]:
    return {s: work[s] * US_PER_TOKEN[s] / 1e6 * speed for s in US_PER_TOKEN}


def training_line(est: dict[str, float], size: TrainingSize, source: str) -> str:
    from retriever_training.label_cost import fmt_duration

    stages = ", ".join(f"{s} {fmt_duration(v)}" for s, v in est.items())
    return (f"then training: ~{fmt_duration(sum(est.values()))} on this machine ({stages}; "
            f"{size.train_queries} labelled + {size.student_queries - size.train_queries} ranker-scored queries, "
            f"{size.passages} passages of ~{size.passage_tokens:.0f} tokens; from the {source})")


def training_estimate(cfgs: dict, plan: dict, corpus, runs: Path) -> dict:
    from retriever_training.label_cost import machine_id

    size = planned_size(cfgs, plan, corpus, mean_passage_tokens(corpus))
    speed, source = machine_speed(runs, machine_id())
    est = estimate_training(training_work(cfgs, size), speed)
    return {"seconds": est, "line": training_line(est, size, source)}


def recorded_work(cfgs: dict, corpus, used: dict, student_queries: int, test_queries: int) -> dict:
    """What a finished retrain keeps beside its timings_s (its queries_used counts)."""
    from retriever_training.label_cost import machine_id

    size = TrainingSize(len(corpus), mean_passage_tokens(corpus), used["labelled_for_training"],
                        student_queries, used["heldout"], test_queries)
    return {"machine": machine_id(), "training_work": training_work(cfgs, size)}
