"""Benchmark of the evaluation harness: questions/min and RAGAS judge cost.

    python benchmarks/bench_eval.py [--ir-n 500] [--rag-n 3] [--ragas-n 2] [--retrievers base,bm25]
                                    [--json out.json]

Measures, on the shipped squad_dev test split (seeded subsets, fresh run directories so nothing
is resumed):
  - retrieval-only eval, questions/min per retriever (index already loaded: warmed on 5 questions)
  - full RAG answering with the embedded LLM, questions/min and seconds per answer (base)
  - RAGAS judging with the embedded LLM: seconds per sample and per metric, failure counts
Run it alone on the machine: the LLM figures collapse under CPU contention.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed_eval(cfg, out: Path) -> float:
    from eval.run import run_eval

    t0 = time.perf_counter()
    run_eval(cfg, out=out, progress=False, report=False)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ir-n", type=int, default=500)
    ap.add_argument("--rag-n", type=int, default=3)
    ap.add_argument("--ragas-n", type=int, default=2)
    ap.add_argument("--retrievers", default="base,bm25,hybrid")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args(argv)

    from eval.run import EvalConfig
    from rag.records import read_jsonl
    from rag.settings import apply_offline_env, set_torch_threads

    apply_offline_env()
    set_torch_threads()
    figures: dict = {"retrieval_only_q_per_min": {}}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        tmp = Path(tmp)
        for spec in a.retrievers.split(","):
            warm = EvalConfig(retrievers=(spec,), n=5, seed=1, retrieval_only=True)
            timed_eval(warm, tmp / f"warm-{spec}")
            cfg = EvalConfig(retrievers=(spec,), n=a.ir_n, retrieval_only=True)
            s = timed_eval(cfg, tmp / f"ir-{spec}")
            figures["retrieval_only_q_per_min"][spec] = round(a.ir_n / s * 60, 1)
            print(f"retrieval-only {spec:>8}: {a.ir_n} questions in {s:.1f} s = {a.ir_n / s * 60:,.0f} q/min")
        if a.rag_n:
            from rag.llm import llama_index_llm, start_local_server

            t0 = time.perf_counter()
            start_local_server()
            figures["llm_start_s"] = round(time.perf_counter() - t0, 1)
            llm = llama_index_llm()
            cfg = EvalConfig(retrievers=("base",), n=a.rag_n, seed=2, ragas_n=a.ragas_n)
            from eval.run import run_eval

            t0 = time.perf_counter()
            run_eval(cfg, out=tmp / "rag", llm=llm, progress=False, report=False)
            s = time.perf_counter() - t0
            recs = list(read_jsonl(tmp / "rag" / "base" / "answers.jsonl"))
            ans_s = sum(r["timings"]["total_s"] for r in recs)
            judged = list(read_jsonl(tmp / "rag" / "base" / "ragas.jsonl")) if a.ragas_n else []
            judge_s = sum(e["seconds"] for r in judged for e in r["metrics"].values())
            figures["rag"] = {"n": len(recs), "answer_s_mean": round(ans_s / len(recs), 2),
                              "q_per_min": round(len(recs) / ans_s * 60, 2),
                              "first_token_s_mean": round(sum(r["timings"]["first_token_s"] for r in recs) / len(recs), 2)}
            print(f"full RAG (base, embedded LLM): {len(recs)} answers, {ans_s / len(recs):.1f} s each "
                  f"= {len(recs) / ans_s * 60:.1f} q/min (first token {figures['rag']['first_token_s_mean']:.1f} s)")
            if judged:
                per_metric: dict[str, list] = {}
                for r in judged:
                    for m, e in r["metrics"].items():
                        per_metric.setdefault(m, []).append(e)
                figures["ragas"] = {"n": len(judged), "s_per_sample": round(judge_s / len(judged), 1),
                                    "per_metric": {m: {"s_mean": round(sum(e["seconds"] for e in es) / len(es), 1),
                                                       "statuses": {st: sum(1 for e in es if e["status"] == st)
                                                                    for st in {e["status"] for e in es}}}
                                                   for m, es in per_metric.items()}}
                print(f"RAGAS judge (embedded LLM): {judge_s / len(judged):.1f} s per sample over {len(judged)}")
                for m, v in figures["ragas"]["per_metric"].items():
                    print(f"  {m:>22}: {v['s_mean']:.1f} s/sample  {v['statuses']}")
            figures["rag_eval_wall_s"] = round(s, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
