"""What perfect labels would buy on the own-corpus case: the LLM's ranking replaced by the gold answers.

    python benchmarks/own_corpus_case.py OUT            # the case, with OUT/log_answers.jsonl
    python benchmarks/own_corpus_ceiling.py OUT         # writes OUT/oracle-labels/, no LLM call
    cd OUT && distilrag retrain --corpus docs --queries log.txt --label.labels_dir=$PWD/oracle-labels \\
        --run.name=own-oracle --run.set_default=false --run.force=true
    distilrag eval --corpus docs --queries heldout.jsonl --retrieval-only \\
        --retrievers base,<runs>/own-oracle/model,hybrid+<runs>/own-oracle/ranker --name own-oracle
(<runs>: the runs directory, runs/ under the repository unless DISTILRAG_RUNS_DIR says otherwise;
the figures are in docs/own-corpus.md.)

In:  OUT/docs (the case's documents), OUT/log.txt and OUT/log_answers.jsonl (the log's gold answers,
     which the product never reads: a user's log has none)
Out: OUT/oracle-labels/ — the label set `distilrag label --corpus docs --queries log.txt` would
     write (same queries, same first-stage candidates), each query's top-k ordered by the gold
     answers instead of the LLM: chunks holding a gold answer first, the rest in first-stage order.

The retrain then runs unchanged on it (ranker, teacher scores, student, verdict), so the student's
gain over the base is the ceiling of this recipe on this case when the teacher's labels are as good
as labels get: the gap between it and the LLM-labelled student is what a stronger teacher could
still buy, and what is left above it needs more queries or another student.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_oracle_labels(case: Path, argv: list[str] = ()) -> dict:
    from eval.qa_metrics import answer_in_context
    from rag.corpus import load_corpus
    from rag.records import LLMRanking, read_jsonl, write_json, write_jsonl
    from retriever_training.label import prepare_lists
    from retriever_training.recipe import parse_command, resolve

    out = case / "oracle-labels"
    answers = {r["query"].strip(): r["answers"] for r in read_jsonl(case / "log_answers.jsonl")}
    _, cfgs = parse_command(["--corpus", str(case / "docs"), "--queries", str(case / "log.txt"),
                             f"--label.labels_dir={out.resolve()}", *argv], "own_corpus_ceiling", __doc__)
    corpus = load_corpus(cfgs["label"].corpus)
    cfgs = resolve(cfgs, corpus)
    _, lists = prepare_lists(cfgs, corpus=corpus)  # exactly the lists the LLM would rank
    k = cfgs["llm_rank"].max_candidates
    rankings, holding = [], 0
    for cl in lists:
        gold = answers.get(cl.query.strip())
        if gold is None:
            raise SystemExit(f"{cl.query!r} is not in {case / 'log_answers.jsonl'}: rebuild the case")
        ids = [c.docid for c in cl.candidates[:k]]
        holds = {d: answer_in_context(gold, [corpus.by_id[d].text]) for d in ids}
        ranked = sorted(ids, key=lambda d: -holds[d])  # stable: ties keep the first-stage order
        holding += holds[ranked[0]] == 1.0
        rankings.append(LLMRanking(qid=cl.qid, docids_in=ids, ranked_docids=ranked, model="gold answers",
                                   prompt_id="oracle", mode="oracle", n_calls=0))
    write_jsonl(out / "rankings.jsonl", rankings)
    # what the retrain's model card names as the teacher
    write_json(out / "provenance.json", {"teacher_model": "gold answers (own_corpus_ceiling.py)", "mode": "oracle",
                                         "prompt_id": "oracle", "queries": len(rankings)})
    return {"labels": str(out), "queries": len(rankings), "top_k": k, "an_answer_in_top_k": holding}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", type=Path, help="the directory own_corpus_case.py built")
    a, rest = ap.parse_known_args(argv)
    print(json.dumps(write_oracle_labels(a.case, rest)))


if __name__ == "__main__":
    main()
