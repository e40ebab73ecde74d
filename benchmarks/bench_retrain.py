"""Retrain time from the committed labels, per stage, on this machine (target: <= 20 min on 2 cores).

    python benchmarks/bench_retrain.py [--config retriever_training/configs/squad_dev.yaml] [overrides...]

Runs every stage of `distilrag retrain` into a fresh run directory (runs/<name>-bench-<time>/,
so nothing is skipped; the model is not made the default) and prints one JSON line: seconds per
stage, total wall time, the threads and precision used, and the dev metrics reached, so a speed-up
that costs quality shows in the same line.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="retriever_training/configs/squad_dev.yaml")
    args, overrides = ap.parse_known_args()

    from rag.config import load_sections
    from rag.settings import apply_offline_env, set_torch_threads, use_bf16
    from retriever_training.retrain import SECTIONS, retrain

    apply_offline_env()
    set_torch_threads()
    name = load_sections(args.config, SECTIONS, overrides)["run"].name
    cfgs = load_sections(args.config, SECTIONS, [*overrides, f"run.name={name}-bench-{time.strftime('%Y%m%d-%H%M%S')}",
                                                 "run.force=true", "run.set_default=false"])
    import torch

    t = time.perf_counter()
    m = retrain(cfgs)
    print(json.dumps({"total_s": round(time.perf_counter() - t, 1), "stages_s": m["timings_s"],
                      "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                      "bf16": use_bf16(cfgs["distill"].precision), "labelled": m["n_labels"],
                      "train_examples": m["distill"].get("train_examples"),
                      "base_dev_ndcg@10": m["distill"]["base_dev"].get("ndcg@10"),
                      "dev_ndcg@10": m["distill"]["best_dev"].get("ndcg@10"),
                      "ranker_ndcg@10_vs_gold": m["ranker"].get("ranker_ndcg@10_vs_gold")}), flush=True)


if __name__ == "__main__":
    main()
