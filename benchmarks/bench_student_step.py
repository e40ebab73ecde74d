"""Student training step time by sequence length and passages per forward (distill.rows_per_forward).

    python benchmarks/bench_student_step.py runs/<run> [--steps 4] [--lengths 256,512] [--rows 0,8,16]
        [--attention eager,sdpa] [--hidden-dropout 0.1,0]

Takes the first document-grouped batches of a run's teacher scores (the batches the distill stage
trains on) and times the KL loss forward and backward with the run's own distill settings (batch
size, candidates per query, precision, attention dropout, frozen word embeddings; train mode), for every attention kernel x
hidden dropout x length x rows_per_forward (kernel and hidden dropout default to the run's); no
optimizer step, so every setting sees the same weights. Prints one JSON line per setting. The
first setting also pays the warm-up: list the one to compare against first.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--lengths", default="256,512")
    ap.add_argument("--rows", default="0,8,16")
    ap.add_argument("--attention", default="", help="kernels to compare, e.g. eager,sdpa (default: the run's)")
    ap.add_argument("--hidden-dropout", default="", help="e.g. 0.1,0 (default: the run's; 'none' = the backbone's)")
    args = ap.parse_args()

    from rag.settings import apply_offline_env, set_torch_threads

    apply_offline_env()
    set_torch_threads()
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.corpus import load_corpus, load_queries
    from rag.models import base_embedder_path
    from rag.records import TeacherScores, read_jsonl
    from retriever_training.distill import DocumentBatchSampler, training_dataset
    from retriever_training.losses import ListwiseKLInBatchLoss
    from retriever_training.training_speed import (freeze_word_embeddings, set_attention, set_attention_dropout,
                                                   set_hidden_dropout, training_attention, use_bf16)

    config = json.loads((Path(args.run_dir) / "config.json").read_text())
    corpus_name, dc = config["label"]["corpus"], config["distill"]
    corpus = load_corpus(corpus_name)
    text = {q.qid: q.query for q in load_queries(corpus_name)}
    scores = [s for s in read_jsonl(f"{args.run_dir}/teacher_scores.jsonl.gz", TeacherScores) if s.qid in text]
    dataset, groups = training_dataset(scores, text, corpus, dc["docs_per_query"])
    sampler = DocumentBatchSampler(groups)(dataset, batch_size=dc["batch_size"], drop_last=False,
                                           valid_label_columns=["label"], generator=None, seed=0)
    batches = list(iter(sampler))[:args.steps]
    bf16 = use_bf16(dc["precision"])

    model = SentenceTransformer(str(base_embedder_path()))
    set_attention_dropout(model, dc["attention_dropout"])
    freeze_word_embeddings(model, dc.get("freeze_word_embeddings", False))
    model.train()
    kernels = args.attention.split(",") if args.attention else [training_attention(dc.get("attention", "auto"))]
    dropouts = [None if x == "none" else float(x) for x in args.hidden_dropout.split(",")] if args.hidden_dropout \
        else [dc.get("hidden_dropout")]
    def seconds_per_step(rows: int) -> float:
        loss_fn = ListwiseKLInBatchLoss(model, rows_per_forward=rows)
        t = time.perf_counter()
        for batch in batches:
            ex = dataset[batch]
            features = [model.preprocess(ex["query"])] + \
                [model.preprocess(ex[f"doc_{i}"]) for i in range(1, dc["docs_per_query"] + 1)]
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(features, torch.tensor(ex["label"]))
            loss.backward()
            model.zero_grad()
        return (time.perf_counter() - t) / len(batches)

    lengths, row_counts = [int(x) for x in args.lengths.split(",")], [int(x) for x in args.rows.split(",")]
    for kernel, hidden, length, rows in itertools.product(kernels, dropouts, lengths, row_counts):
        set_attention(model, kernel)
        set_hidden_dropout(model, 0.1 if hidden is None else hidden)  # None: the backbone's 0.1
        model.max_seq_length = length
        print(json.dumps({"attention": kernel, "hidden_dropout": hidden, "max_seq_length": length,
                          "rows_per_forward": rows, "steps": len(batches),
                          "s_per_step": round(seconds_per_step(rows), 2),
                          "bf16": bf16, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
