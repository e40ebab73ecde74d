"""The own-corpus quality case, built from the shipped corpus to look like a user's input.

    python benchmarks/own_corpus_case.py OUT [--log 1000] [--eval 1000] [--seed 0]

In:  the shipped corpus's test split (20 articles nothing trains on in the shipped recipe).
Out: OUT/docs/<article>.txt   each article as one document: the loader chunks it, so passages are
                              chunks, not the gold paragraphs, and no qrels apply
     OUT/log.txt              --log of its questions, one a line: the unlabelled query log
     OUT/log_answers.jsonl    the log's gold answers, read only by own_corpus_ceiling.py
     OUT/heldout.jsonl        --eval other questions of the same articles with their gold answers,
                              for evaluation only (answer in the top k; nothing trains on them)
Then the README's own-corpus commands, as a user runs them (docs/own-corpus.md has the figures):
    distilrag retrain --corpus OUT/docs --queries OUT/log.txt --queries.n=300
    distilrag eval --corpus OUT/docs --queries OUT/heldout.jsonl --retrieval-only \\
                   --retrievers base,distilled,bm25,hybrid:distilled --name own-case
"""
from __future__ import annotations

import argparse
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(out: Path, n_log: int, n_eval: int, seed: int) -> dict:
    from rag.corpus import load_corpus, load_queries
    from rag.records import write_jsonl

    corpus = load_corpus("squad_dev")
    questions = load_queries("squad_dev", "test")
    by_article: dict[str, list] = defaultdict(list)
    for p in corpus.passages:
        by_article[p.source].append(p)
    # A test question's article: the one whose paragraphs hold its gold answer (split by article).
    test_articles = _test_articles(corpus, questions)
    docs = out / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for source in sorted(test_articles):
        paras = sorted(by_article[source], key=lambda p: int(p.docid.rsplit("#", 1)[1]))
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", source)
        text = paras[0].title + "\n\n" + "\n\n".join(p.text for p in paras) + "\n"
        (docs / f"{name}.txt").write_text(text, encoding="utf-8")
    order = random.Random(seed).sample(questions, len(questions))
    log, held = order[:n_log], order[n_log:n_log + n_eval]
    lines = [q.query.replace("\n", " ").strip() for q in log]
    (out / "log.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    # the log's gold answers, for own_corpus_ceiling.py only: a user's log has none, nothing else reads them
    write_jsonl(out / "log_answers.jsonl", [{"query": t, "answers": list(q.answers)} for t, q in zip(lines, log)])
    write_jsonl(out / "heldout.jsonl", [{"qid": q.qid, "query": q.query, "answers": list(q.answers)} for q in held])
    return {"documents": len(test_articles), "log": len(log), "heldout": len(held)}


def _test_articles(corpus, questions) -> set[str]:
    from rag.corpus import load_qrels

    qrels = load_qrels("squad_dev")
    by_id = corpus.by_id
    return {by_id[d].source for q in questions for d in qrels.get(q.qid, {}) if d in by_id}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--log", type=int, default=1000, help="questions in the query log")
    ap.add_argument("--eval", type=int, default=1000, help="held-out questions with gold answers")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print(build(a.out, a.log, a.eval, a.seed))


if __name__ == "__main__":
    main()
