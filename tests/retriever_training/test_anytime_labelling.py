"""Anytime query-likelihood labelling and its cost estimate, with a fake scorer and a fake clock:
a budget or query cap stops at a query boundary with only whole queries written, a resume pays no
pair twice, and the dry run's time is the estimate's arithmetic over the probed or ledger rate."""
import json

import pytest

from rag.corpus import Corpus
from rag.llm_cache import LLMCache
from rag.records import Candidate, CandidateList, LLMRanking, Passage, read_jsonl
from retriever_training import label_cost
from retriever_training.llm_rank import rank_candidates
from retriever_training.ranking import LLMRankConfig, ledger_path
from retriever_training.rank_ql import rank_query_likelihood

# 8 passages in corpus order; each query's 4 candidates come from all over the corpus, so scoring
# in corpus order (the old way) completes no query until most passages are done.
CORPUS = Corpus("toy", [Passage(f"d{i}", f"passage {i} " + "word " * (10 + i), title=f"t{i}") for i in range(8)])
CANDS = [[0, 7, 3, 4], [1, 6, 2, 5], [0, 5, 2, 7], [3, 6, 1, 4], [0, 1, 2, 7], [4, 5, 6, 7]]


def lists():
    return [CandidateList(f"q{j}", f"question {j} about things", "hybrid",
                          [Candidate(f"d{i}", 1.0, r + 1) for r, i in enumerate(c)]) for j, c in enumerate(CANDS)]


class FakeScorer:
    """Scores from the text; every passage read costs one second of the fake clock."""

    def __init__(self, clock=None, fail_at: int = 0):
        self.pairs: list[tuple[str, str]] = []
        self.reads = 0
        self.clock, self.fail_at = clock, fail_at

    def score_passage(self, title, text, queries):
        self.reads += 1
        if self.fail_at and self.reads == self.fail_at:
            raise KeyboardInterrupt  # stands in for kill -9 between two committed passages
        if self.clock is not None:
            self.clock.t += 1.0
        self.pairs += [(title, q) for q in queries]
        self.last_tokens = 10 * len(queries)
        return [-(len(text) % 7) - 0.01 * int(q.split()[1]) for q in queries]


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def run(tmp_path, scorer, clock=None, **cfg):
    return rank_query_likelihood(lists(), CORPUS, LLMRankConfig(max_candidates=4, **cfg), tmp_path / "r.jsonl",
                                 LLMCache(tmp_path / "cache.sqlite"), progress=False, scorer=scorer,
                                 clock=clock or Clock())


def written(tmp_path):
    return list(read_jsonl(tmp_path / "r.jsonl", LLMRanking)) if (tmp_path / "r.jsonl").exists() else []


def whole(recs):
    return all(sorted(r.ranked_docids) == sorted(r.docids_in) and len(r.docids_in) == 4 for r in recs)


def test_queries_complete_steadily_and_each_passage_is_read_once(tmp_path):
    import retriever_training.rank_ql as rank_ql

    scorer = FakeScorer()
    reads_at_write = []
    real = rank_ql._write
    rank_ql._write = lambda *a, **k: (real(*a, **k), reads_at_write.append(scorer.reads))
    try:
        run(tmp_path, scorer)
    finally:
        rank_ql._write = real
    assert scorer.reads == 8 and len(scorer.pairs) == 24   # every prompt read once, every pair once
    assert len(written(tmp_path)) == 6 and whole(written(tmp_path))
    # The first query is written after its own 4 passages (in corpus order: after 7 of the 8); then
    # the query with the fewest passages left goes next (q2, 2 left; then q4, 1 left; then the
    # passage the other three all lack). Queries in input order would give [4, 8, 8, 8, 8, 8].
    assert reads_at_write == [4, 6, 7, 8, 8, 8]


def test_cheapest_first_takes_fewest_left_ties_in_order_and_skips_stale_entries():
    from retriever_training.rank_ql import CheapestFirst

    turns = CheapestFirst({"a": 3, "b": 2, "c": 2, "d": 5})
    assert turns.take(1) == ["b"]                  # fewest left; "c" ties and comes later
    turns.update("d", 1)                           # another query's passage was read for "d"
    turns.done("c")                                # completed by another query's turn
    assert turns.take(5) == ["d", "a"] and not turns
    assert turns.take(1) == []


def test_a_budget_stop_leaves_whole_queries_and_a_resume_pays_nothing_twice(tmp_path):
    clock = Clock()
    first = FakeScorer(clock)
    led = run(tmp_path, first, clock, budget_minutes=0.05)  # 3 s: spent inside the first query
    recs = written(tmp_path)
    assert led.stopped == "budget" and 0 < len(recs) < 6 and whole(recs)
    paid = set(first.pairs)
    # the completed queries are exactly those whose every pair was paid
    fully_paid = {cl.qid for cl in lists()
                  if all((f"t{c.docid[1:]}", cl.query) in paid for c in cl.candidates)}
    assert {r.qid for r in recs} == fully_paid and led.queries_done == len(recs)
    ledger = json.loads(ledger_path(tmp_path / "r.jsonl").read_text())
    assert ledger["runs"][-1]["status"] == "stopped" and ledger["total"]["calls"] == len(paid)

    # resume through the stage entry point: finished queries skipped, cached pairs not paid again
    second = FakeScorer()
    rank_candidates(lists(), CORPUS, LLMRankConfig(max_candidates=4), tmp_path / "r.jsonl",
                    cache=LLMCache(tmp_path / "cache.sqlite"), progress=False, scorer=second)
    assert not paid & set(second.pairs) and len(paid) + len(second.pairs) == 24
    recs = written(tmp_path)
    assert sorted(r.qid for r in recs) == [f"q{i}" for i in range(6)] and whole(recs)


def test_a_kill_keeps_whole_queries_and_the_paid_passages(tmp_path):
    first = FakeScorer(fail_at=6)  # dies reading the 6th passage
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, first)
    before = written(tmp_path)
    assert before and whole(before)
    second = FakeScorer()
    run(tmp_path, second)
    assert not set(first.pairs) & set(second.pairs) and len(first.pairs) + len(second.pairs) == 24
    assert second.reads == 8 - 5


def test_max_queries_ranks_that_many_in_all_and_a_larger_cap_continues(tmp_path):
    def label(n, scorer):
        return rank_candidates(lists(), CORPUS, LLMRankConfig(max_candidates=4, max_queries=n), tmp_path / "r.jsonl",
                               cache=LLMCache(tmp_path / "cache.sqlite"), progress=False, scorer=scorer)

    a = FakeScorer()
    assert label(2, a).stopped == "max_queries"
    assert [r.qid for r in written(tmp_path)] == ["q0", "q1"]
    assert len(a.pairs) == 8  # only those two queries' pairs were paid
    b = FakeScorer()
    label(4, b)
    assert [r.qid for r in written(tmp_path)] == ["q0", "q1", "q2", "q3"] and not set(a.pairs) & set(b.pairs)


def test_the_dry_run_estimate_is_the_arithmetic_over_a_probed_rate(tmp_path):
    probed = []

    def probe(cfg, samples):
        probed.append(samples)
        return label_cost.Rate(tokens_per_s=100.0, load_s=2.0, source="timing probe (fake)")

    led = rank_query_likelihood(lists(), CORPUS, LLMRankConfig(max_candidates=4), tmp_path / "r.jsonl",
                                LLMCache(tmp_path / "c.sqlite"), progress=False, dry_run=True, probe=probe)
    est = led.extra["estimate"]
    queries = {cl.qid: cl.query for cl in lists()}
    tokens = sum(label_cost.passage_tokens(p.text, p.title) for p in CORPUS.passages) + \
        sum(label_cost.query_tokens(queries[f"q{j}"]) * 4 for j in range(6))
    assert (est["pairs"], est["unique_passages"], est["prompt_tokens"]) == (24, 8, tokens)
    assert est["seconds"] == round(2.0 + tokens / 100.0, 1) and est["tokens_per_s"] == 100.0
    assert len(probed) == 1 and len(probed[0]) == label_cost.PROBE_PASSAGES
    assert not (tmp_path / "r.jsonl").exists()  # spent nothing
    line = label_cost.cost_line(est)
    assert "24 pairs" in line and "8 unique passages" in line and "100 tokens/s" in line and "probe" in line


def test_the_estimate_comes_from_this_machines_ledger_when_there_is_one(tmp_path):
    # A real (fake-scored) run writes the ledger; its achieved rate then estimates the next job.
    clock = Clock()
    first = FakeScorer(clock)
    led = run(tmp_path, first, clock, max_queries=0)
    assert led.est_tokens > 0 and led.seconds == 8.0
    fresh = tmp_path / "other"
    fresh.mkdir()
    dry = rank_query_likelihood(lists(), CORPUS, LLMRankConfig(max_candidates=4), fresh / "r.jsonl",
                                LLMCache(fresh / "c.sqlite"), progress=False, dry_run=True,
                                ledgers=[ledger_path(tmp_path / "r.jsonl")],
                                probe=lambda *a: pytest.fail("probed although a ledger rate exists"))
    est = dry.extra["estimate"]
    assert est["tokens_per_s"] == round(led.est_tokens / 8.0, 1) and "ledger (1 earlier run" in est["rate_source"]
    assert est["seconds"] == pytest.approx(8.0, abs=0.1)  # the same job at the same rate
    # A ledger from another machine is not this machine's rate.
    data = json.loads(ledger_path(tmp_path / "r.jsonl").read_text())
    for r in data["runs"]:
        r["machine"] = "elsewhere"
    ledger_path(tmp_path / "r.jsonl").write_text(json.dumps(data))
    assert label_cost.ledger_rate([ledger_path(tmp_path / "r.jsonl")], led.model, 0) is None


def test_the_estimate_prices_an_endpoint():
    job = label_cost.JobSize(queries=10, pairs=100, unique_passages=50, prompt_tokens=2_000_000,
                             completion_tokens=1_000_000)
    est = label_cost.estimate(job, None, price_in_per_mtok=0.5, price_out_per_mtok=2.0)
    assert est["cost_usd"] == 3.0 and est["seconds"] is None and "$3.00" in label_cost.cost_line(est)
    assert "unknown" in label_cost.cost_line(est)


def test_a_retrain_after_a_budget_stop_trains_on_the_ranked_queries_and_says_so(tmp_path, monkeypatch, capsys):
    from rag.config import ConfigError, load_sections
    from retriever_training import label, retrain as retrain_mod, train_ranker
    from retriever_training.ranking import Ledger
    from retriever_training.recipe import SECTIONS
    from retriever_training.train_ranker import is_heldout

    corpus = tmp_path / "news.jsonl"
    corpus.write_text("".join(f'{{"_id": "d{i}", "text": "paragraph {i} about things"}}\n' for i in range(10)))
    log = tmp_path / "log.txt"
    log.write_text("".join(f"question {i}?\n" for i in range(40)))
    qids = [f"q{i}" for i in range(20)]
    cands = [CandidateList(q, f"text {q}", "hybrid", [Candidate(f"d{i}", 1.0, i + 1) for i in range(6)]) for q in qids]
    first_held = next(i for i, q in enumerate(qids) if is_heldout(q, 0.1))
    labelled = {"n": first_held + 2}
    labels = tmp_path / "labels"

    def fake_labelling(cfgs, dry_run=False, progress=True, corpus=None):
        from rag.records import append_jsonl

        for c in cands[: labelled["n"]]:  # the budget ran out after these
            ids = [x.docid for x in c.candidates[:4]]
            append_jsonl(labels / "rankings.jsonl", LLMRanking(c.qid, ids, ids, "m", "p", "query_likelihood"))
        return Ledger(mode="query_likelihood", model="m", queries_done=labelled["n"], stopped="budget")

    class Trained(Exception):
        pass

    def fake_train(cfg, rankings, *a, **k):
        raise Trained(sorted(r.qid for r in rankings))

    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(label, "prepare_lists", lambda cfgs, progress, corpus: (labels, cands))
    monkeypatch.setattr(label, "run_labelling", fake_labelling)
    monkeypatch.setattr(retrain_mod, "unlabelled_queries", lambda *a, **k: ([], []))
    monkeypatch.setattr(retrain_mod, "unlabelled_lists", lambda *a, **k: [])
    monkeypatch.setattr(train_ranker, "train_ranker", fake_train)
    cfgs = load_sections(None, SECTIONS, [f"label.corpus={corpus}", "queries.source=file", f"queries.file={log}",
                                          "llm_rank.budget_minutes=1", "queries.n=20"])
    with pytest.raises(Trained) as e:
        retrain_mod.retrain(cfgs)
    assert e.value.args[0] == sorted(qids[: labelled["n"]])  # the ranked queries, and only those
    out = capsys.readouterr().out
    assert "labelling stopped (the budget of 1 min was spent)" in out
    assert f"training on the {labelled['n']} of 20 selected queries" in out

    # stopped before any held-out query was ranked: nothing could judge the student
    import shutil

    shutil.rmtree(labels)
    shutil.rmtree(tmp_path / "runs")
    labelled["n"] = first_held
    assert first_held > 0
    with pytest.raises(ConfigError, match="none of the .* ranked queries is held out"):
        retrain_mod.retrain(cfgs)


def test_a_dry_run_before_the_queries_exist_calls_no_llm_and_prices_writing_them(tmp_path, monkeypatch):
    """No query log: the LLM would write the queries, so the dry run plans on stand-ins about the
    same passages and prices the writing (and a retrain's top-up), writing nothing."""
    from rag import llm
    from rag.config import load_sections
    from rag.corpus import load_corpus
    from retriever_training import label, retrain as retrain_mod
    from retriever_training.recipe import labels_path, resolve
    from retriever_training.synthesize import sample_passages

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"doc{i}.txt").write_text(f"Topic {i}. " + " ".join(f"fact{i}x{j} is here." for j in range(30)))
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(llm, "openai_client", lambda *a, **k: pytest.fail("the dry run called the LLM"))
    monkeypatch.setattr(label_cost, "timing_probe", lambda cfg, samples: label_cost.Rate(100.0, 0.0, "probe (fake)"))
    corpus = load_corpus(docs)
    cfgs = resolve(load_sections(None, retrain_mod.SECTIONS, [f"label.corpus={docs}", "queries.n=4",
                                                              "candidates.depth=5", "queries.synthetic=6"]), corpus)
    led = label.run_labelling(cfgs, dry_run=True, progress=False, corpus=corpus)
    write = led.extra["writing"]["the queries to label"]
    shown = sample_passages(corpus, 4, cfgs["queries"].seed)
    tokens = sum(label_cost.passage_tokens(p.text) + label_cost.SYNTH_PROMPT_TOKENS for p in shown)
    assert (write["queries"], write["pairs"], write["prompt_tokens"]) == (4, 4, tokens)
    assert write["seconds"] == round((tokens + label_cost.DECODE_SLOWDOWN * 4 * label_cost.QUESTION_TOKENS) / 100, 1)
    assert led.extra["writing"]["unlabelled queries"]["queries"] == 6
    est = led.extra["estimate"]
    assert est["queries"] == 4 and est["pairs"] == 4 * min(5, len(corpus)) and est["seconds"] > 0
    assert not (labels_path(cfgs["label"]) / "queries.jsonl").exists()
    line = label.labelling_line(led, cfgs)
    assert line.startswith("to write the queries to label: 4 questions, 4 LLM calls") and "to label: 4 queries" in line
