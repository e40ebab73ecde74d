"""Regenerate the shipped SQuAD-dev corpus from the raw SQuAD v1.1 dev JSON.

    python corpora/squad_dev/prepare.py            # writes corpus.jsonl.gz, queries.jsonl.gz, qrels.tsv, split.json

In:  raw/squaddev_v1.1.json.gz (SQuAD v1.1 dev, 48 articles; see PROVENANCE.md)
Out: corpus.jsonl.gz   Passage records, one per paragraph (2,067), docid "<article title>#<paragraph index>"
     queries.jsonl.gz  Query records (10,565) with answer strings and split
     qrels.tsv         TREC qrels: qid 0 docid 1 (the paragraph each question was written from)
     split.json        the article -> split assignment, its seed and the counts below

The split is by article, so no paragraph (and no article) is shared between splits: questions
reuse their passage's wording, and a paragraph seen in training would flatter the test.
Expected counts are asserted at the end; a change in them means the raw file changed.
"""
from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from rag.records import Passage, Query, write_json, write_jsonl  # noqa: E402

RAW = HERE / "raw" / "squaddev_v1.1.json.gz"
SEED = 13
N_TEST_ARTICLES = 20  # >= 2,000 questions that nothing trains on
N_DEV_ARTICLES = 4    # model selection during training
EXPECTED = {"articles": 48, "passages": 2067, "questions": 10565}


def assign_splits(titles: list[str], seed: int = SEED) -> dict[str, str]:
    order = sorted(titles)
    random.Random(seed).shuffle(order)
    split = {}
    for i, t in enumerate(order):
        split[t] = "test" if i < N_TEST_ARTICLES else "dev" if i < N_TEST_ARTICLES + N_DEV_ARTICLES else "train"
    return split


def main() -> None:
    raw = json.load(gzip.open(RAW, "rt", encoding="utf-8"))
    articles = raw["data"]
    split_of = assign_splits([a["title"] for a in articles])
    passages, queries, qrels = [], [], []
    for a in articles:
        title = a["title"]
        for pi, p in enumerate(a["paragraphs"]):
            docid = f"{title}#{pi}"
            passages.append(Passage(docid=docid, text=p["context"], title=title.replace("_", " "), source=title))
            for qa in p["qas"]:
                answers = list(dict.fromkeys(x["text"] for x in qa["answers"]))
                queries.append(Query(qid=qa["id"], query=qa["question"].strip(), answers=answers,
                                     split=split_of[title]))
                qrels.append((qa["id"], docid))
    counts = {"articles": len(articles), "passages": len(passages), "questions": len(queries)}
    for s in ("train", "dev", "test"):
        counts[f"{s}_articles"] = sum(v == s for v in split_of.values())
        counts[f"{s}_questions"] = sum(q.split == s for q in queries)
    assert {k: counts[k] for k in EXPECTED} == EXPECTED, f"unexpected counts {counts}: raw file changed?"
    assert counts["train_questions"] >= 1000 and counts["test_questions"] >= 2000, counts

    write_jsonl(HERE / "corpus.jsonl.gz", passages)
    write_jsonl(HERE / "queries.jsonl.gz", queries)
    (HERE / "qrels.tsv").write_text("".join(f"{q}\t0\t{d}\t1\n" for q, d in qrels))
    write_json(HERE / "split.json", {"seed": SEED, "by": "article", "counts": counts,
                                     "canary": raw.get("canary", ""),
                                     "articles": dict(sorted(split_of.items()))})
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
