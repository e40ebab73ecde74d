"""The committed not-in-corpus questions: on the shipped corpus's topics, their answers in no passage."""
import json
import re
from pathlib import Path

from rag.settings import REPO_ROOT

FILE = REPO_ROOT / "eval" / "data" / "not_in_corpus.jsonl"


def test_questions_load_with_queries_and_their_answers_are_in_no_passage():
    from eval.run import EvalConfig, load_questions
    from rag.corpus import load_corpus

    qs, qrels = load_questions(EvalConfig(corpus="squad_dev", queries=str(FILE)))  # default --split test
    assert len(qs) >= 30 and qrels is None and all(not q.answers for q in qs)
    rows = [json.loads(line) for line in Path(FILE).read_text(encoding="utf-8").splitlines()]
    assert [r["qid"] for r in rows] == [q.qid for q in qs]
    corpus = load_corpus("squad_dev")
    titles = {p.title for p in corpus.passages}
    texts = [p.text.lower() for p in corpus.passages]
    for r in rows:
        assert r["topic"] in titles, r["qid"]  # the topic is in the corpus ...
        assert r["why"] and r["answer_outside_corpus"] and r["absent"]
        for s in r["absent"]:                   # ... its answer is not
            pat = re.compile(r"(?<!\w)" + re.escape(s.lower()) + r"(?!\w)")
            assert not any(pat.search(t) for t in texts), (r["qid"], s)
