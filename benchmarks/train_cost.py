"""The dry run's training estimate against what finished retrains really took, stage by stage.

    python benchmarks/train_cost.py <runs>/own-llm <runs>/rustbook500 ...
    (cd OUT first when a run's corpus path is relative to where it ran)

In:  finished run directories: metrics.json (timings_s, queries_used, and training_work where the
     retrain recorded it), config.json, ranker_metrics.json; the run's corpus when it recorded no work
Out: a table per stage: the estimate with the fitted costs (retriever_training/train_cost.py, no
     machine scaling), the real time, their ratio. Stages shorter than a few seconds were resumed,
     not run, and are left out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_work(run: Path) -> dict:
    from rag.config import build
    from rag.corpus import load_corpus
    from retriever_training.recipe import SECTIONS
    from retriever_training.train_cost import TrainingSize, mean_passage_tokens, training_work

    m = json.loads((run / "metrics.json").read_text())
    if m.get("training_work"):
        return m["training_work"]
    raw = json.loads((run / "config.json").read_text())
    cfgs = {k: build(cls, {f: v for f, v in raw.get(k, {}).items() if f in cls.__dataclass_fields__}, k)
            for k, cls in SECTIONS.items()}
    corpus = load_corpus(cfgs["label"].corpus)
    used = m["queries_used"]
    students = used["labelled_for_training"] + used["unlabelled_from_log"] + used["unlabelled_synthetic"]
    test = (m.get("heldout") or {}).get("queries", 0)
    return training_work(cfgs, TrainingSize(len(corpus), mean_passage_tokens(corpus), used["labelled_for_training"],
                                            students, used["heldout"], test))


def main() -> None:
    from retriever_training.train_cost import MIN_STAGE_S, estimate_training

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    print("| run | stage | estimated s | real s | real / estimated |")
    print("|---|---|---|---|---|")
    total_est = total_real = 0.0
    for run in args.runs:
        took = json.loads((run / "metrics.json").read_text())["timings_s"]
        for stage, est in estimate_training(run_work(run), 1.0).items():
            if took.get(stage, 0) < MIN_STAGE_S:
                continue
            total_est, total_real = total_est + est, total_real + took[stage]
            print(f"| {run.name} | {stage} | {est:.0f} | {took[stage]:.0f} | {took[stage] / est:.2f} |")
    print(f"| all | | {total_est:.0f} | {total_real:.0f} | {total_real / max(total_est, 1e-9):.2f} |")


if __name__ == "__main__":
    main()
