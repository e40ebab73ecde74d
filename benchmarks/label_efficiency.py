"""Label-efficiency curve: retrain with 100 / 250 / 500 / 1,000 LLM-labelled queries.

    python benchmarks/label_efficiency.py [--sizes 100,250,500,1000] [--config retriever_training/configs/squad_dev.yaml] [overrides...]

Each size is a separate run directory runs/<config name>-labels<N>/ whose metrics.json carries
`n_labels` and the best dev metrics; `distilrag eval report` draws the curve from them. The
ranker sees only the first N labelled queries (its held-out set is unchanged); every other
setting is the config's. Runs are resumable like any retrain. Prints one line per size.
"""
from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,250,500,1000")
    ap.add_argument("--config", default="retriever_training/configs/squad_dev.yaml")
    args, overrides = ap.parse_known_args()

    from rag.config import load_sections
    from rag.settings import apply_offline_env, set_torch_threads
    from retriever_training.retrain import SECTIONS, retrain

    apply_offline_env()
    set_torch_threads()
    base = load_sections(args.config, SECTIONS, overrides)
    for n in [int(x) for x in args.sizes.split(",")]:
        cfgs = load_sections(args.config, SECTIONS, [*overrides, f"ranker.max_queries={n}",
                                                     f"run.name={base['run'].name}-labels{n}",
                                                     "run.force=true", "run.set_default=false"])
        m = retrain(cfgs)
        print(json.dumps({"n_labels": n, "dev": m["distill"]["best_dev"], "base_dev": m["distill"]["base_dev"],
                          "ranker": {k: v for k, v in m["ranker"].items() if "ndcg" in k or "tau" in k}}), flush=True)


if __name__ == "__main__":
    main()
