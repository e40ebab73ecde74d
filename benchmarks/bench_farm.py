"""Query-likelihood labelling throughput on 1 vs 2 local llama-cpp-python servers (the farm path).

    python benchmarks/bench_farm.py [--passages 4] [--queries-per-passage 3] [--servers 1,2]

The same pairs (the shipped corpus's first passages, each with test questions) scored through
retriever_training/ql_farm.py (`--llm_rank.ql_backend=http`) by one server with all the cores'
threads, then by two servers with half of them each. On one small machine two servers only split
the same cores (expect ~1x); the point is that the same code fans out to N machines' servers.
Prints one JSON line per setting.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def work_items(n_passages: int, per_passage: int):
    from rag.corpus import load_corpus, load_queries
    from retriever_training.ql_farm import PassageWork

    corpus = load_corpus("squad_dev")
    questions = load_queries("squad_dev", "test")
    out = []
    for i, p in enumerate(corpus.passages[:n_passages]):
        qs = questions[i * per_passage:(i + 1) * per_passage]
        out.append(PassageWork(p.docid, p.title, p.text, [(q.qid, q.query) for q in qs]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=4)
    ap.add_argument("--queries-per-passage", type=int, default=3)
    ap.add_argument("--servers", default="1,2", help="server counts to measure, comma-separated")
    args = ap.parse_args()
    from rag.llm import free_port, spawn_server
    from rag.models import ensure_llm
    from retriever_training.ql_farm import HTTPQLScorer

    gguf = str(ensure_llm())
    work = work_items(args.passages, args.queries_per_passage)
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory() as tmp:
        for n_servers in (int(n) for n in args.servers.split(",")):
            procs = []
            for _ in range(n_servers):
                port = free_port()  # taken by the server before the next one is asked for
                procs.append((spawn_server(gguf, port, max(1, cores // n_servers), 1024, Path(tmp) / "servers.log",
                                           detach=True, logits=True), f"http://127.0.0.1:{port}/v1"))
            try:
                pairs = []
                t0 = time.perf_counter()
                HTTPQLScorer([u for _, u in procs]).score_many(work, lambda d, q, s, n: pairs.append(n))
                seconds = time.perf_counter() - t0
                print(json.dumps({"servers": n_servers, "threads_each": max(1, cores // n_servers),
                                  "pairs": len(pairs), "seconds": round(seconds, 1),
                                  "pairs_per_min": round(60 * len(pairs) / seconds, 2)}), flush=True)
            finally:
                for p, _ in procs:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


if __name__ == "__main__":
    main()
