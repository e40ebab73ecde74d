"""Label-efficiency curve: retrain with 100 / 250 / 500 / 1,000 LLM-labelled queries.

    python benchmarks/label_efficiency.py [--sizes 100,250,500,1000] [--config retriever_training/configs/squad_dev.yaml] [overrides...]

Each size is a separate run directory runs/<config name>-labels<N>/ whose metrics.json carries
`n_labels` and the best dev metrics; `distilrag eval report` draws the curve from them. The
ranker sees only the first N labelled queries (its held-out set is unchanged); the teacher still
scores the same query lists, so only the number of LLM labels varies. Every other setting is the
config's. Runs are resumable like any retrain. Prints one line per size with dev and --split
(default test) metrics of the student, the base model on the same split first.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,250,500,1000")
    ap.add_argument("--config", default="retriever_training/configs/squad_dev.yaml")
    ap.add_argument("--split", default="test", help="split scored after each run ('' to skip)")
    args, overrides = ap.parse_known_args()

    from rag.config import load_sections
    from rag.corpus import load_corpus, load_qrels, load_queries
    from rag.settings import apply_offline_env, set_torch_threads, use_bf16
    from retriever_training.distill import dev_metrics
    from retriever_training.retrain import SECTIONS, retrain

    apply_offline_env()
    set_torch_threads()
    # Read once: a config edited while the sweep runs must not change its later sizes.
    base = load_sections(args.config, SECTIONS, overrides)
    corpus_name = base["label"].corpus
    bf16 = use_bf16(base["distill"].precision)
    if args.split:
        corpus = load_corpus(corpus_name)
        split_queries, qrels = load_queries(corpus_name, args.split), load_qrels(corpus_name)

    def split_metrics(model_path) -> dict:
        from sentence_transformers import SentenceTransformer

        if not args.split:
            return {}
        return dev_metrics(SentenceTransformer(str(model_path)), corpus, split_queries, qrels, bf16=bf16)

    from rag.models import base_embedder_path

    print(json.dumps({"n_labels": 0, args.split: split_metrics(base_embedder_path())}), flush=True)
    for n in [int(x) for x in args.sizes.split(",")]:
        cfgs = {**base, "ranker": replace(base["ranker"], max_queries=n),
                "run": replace(base["run"], name=f"{base['run'].name}-labels{n}", force=True, set_default=False)}
        m = retrain(cfgs)
        print(json.dumps({"n_labels": n, "dev": m["distill"]["best_dev"], "base_dev": m["distill"]["base_dev"],
                          args.split: split_metrics(m["model"]), "timings_s": m["timings_s"],
                          "ranker": {k: v for k, v in m["ranker"].items()
                                     if k == "epochs" or any(w in k for w in ("ndcg", "tau", "top1"))}}),
              flush=True)


if __name__ == "__main__":
    main()
