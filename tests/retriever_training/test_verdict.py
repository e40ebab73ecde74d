"""The verdict on held-out LLM-labelled queries: base vs distilled with a paired bootstrap, the
pipelines ranked best first, the one-sentence verdict, and the publish gate that reads it."""
import json
from dataclasses import replace

import pytest

from rag.records import LLMRanking, ModelCard
from retriever_training import verdict as V
from retriever_training.publish import NotBetterThanBase, gate, publish

HELD = [LLMRanking(qid=f"h{i}", docids_in=[f"c{i}", f"b{i}", f"a{i}", f"x{i}"],
                   ranked_docids=[f"a{i}", f"b{i}", f"c{i}", f"x{i}"], model="m", prompt_id="p", mode="ql")
        for i in range(30)]


def orders(pattern):
    """qid -> order from a pattern of letters, e.g. "abc" = the LLM's own order."""
    return {r.qid: [f"{ch}{r.qid[1:]}" for ch in pattern] for r in HELD}


def test_judge_compares_base_and_student_and_ranks_the_pipelines():
    run = {"base": orders("xcba"), "runs/r/student": orders("abcx"), "bm25": orders("bacx"),
           "bm25+runs/r/ranker": orders("abxc")}
    rep = V.judge(run, HELD, "base", "runs/r/student")
    nd, top1 = rep["llm"]["ndcg@10"], rep["llm"]["top1"]
    assert rep["queries"] == 30 and nd["n"] == 30 and nd["mean_b"] == pytest.approx(1.0)
    assert nd["delta"] > 0.3 and nd["ci_low"] > 0 and nd["p_value"] < 0.01
    assert (top1["mean_a"], top1["mean_b"]) == (0.0, 1.0)
    specs = [p["spec"] for p in rep["pipelines"]]
    assert specs == ["runs/r/student", "bm25+runs/r/ranker", "bm25", "base"]  # best first
    assert rep["best"] == "runs/r/student" and rep["ranked_by"] == "llm" and rep["gold"] == {}
    first = rep["pipelines"][0]
    assert first["ci_low"] <= first["ndcg@10"] <= first["ci_high"] and first["vs_base"]["delta"] == nd["delta"]
    # ties on nDCG@10 are broken by top-1 agreement
    assert rep["pipelines"][1]["top1"] == 1.0


def test_among_pipelines_within_a_hair_of_the_best_one_without_a_reranker_serves():
    # "bm25+ranker" leads "bm25" by less than EQUIVALENT on 30 queries: a tie, the unreranked serves
    run = {"base": orders("xcba"), "bm25+runs/r/ranker": orders("abcx"), "bm25": orders("abcx"),
           "far_behind": orders("cbax")}
    rep = V.judge(run, HELD, "base", "bm25")
    assert rep["pipelines"][0]["spec"] == "bm25+runs/r/ranker"  # listed by nDCG@10 as before (stable order)
    assert rep["best"] == "bm25" and V.best_row(rep)["spec"] == "bm25"
    assert "served: bm25 1.00, within .01 of the best without a reranker's latency" in V.pipelines_line(rep)
    # an unreranked pipeline clearly behind is no tie
    rows = [dict(r) for r in rep["pipelines"]]
    rows[1]["ndcg@10"] = rows[0]["ndcg@10"] - 2 * V.EQUIVALENT
    assert V.serving_pick(rows) == "bm25+runs/r/ranker"
    # among unreranked ties the order decides: the best of them
    assert V.serving_pick([{"spec": "a", "ndcg@10": 0.8}, {"spec": "b", "ndcg@10": 0.795}]) == "a"


def test_with_gold_the_verdict_reports_gold_too_and_ranks_by_it():
    gold = {r.qid: {f"x{r.qid[1:]}": 1} for r in HELD[:10]}  # gold disagrees with the LLM
    run = {"base": orders("xcba"), "s": orders("abcx")}
    rep = V.judge(run, HELD, "base", "s", gold)
    assert rep["gold_queries"] == 10 and rep["gold"]["ndcg@10"]["n"] == 10
    assert rep["gold"]["ndcg@10"]["delta"] < 0 < rep["llm"]["ndcg@10"]["delta"]
    assert rep["ranked_by"] == "gold" and rep["best"] == "base" and "llm_ndcg@10" in rep["pipelines"][0]
    assert "judged by gold" in V.refusal(rep)  # the LLM says better, gold says worse: refused


def test_a_passage_the_llm_never_ranked_is_left_out_not_counted_irrelevant():
    # "n" is outside the LLM's candidates (a passage another first stage surfaced): unjudged
    run = {"base": orders("cbax"), "surfaces_other": orders("nabc"), "candidates_only": orders("abcx")}
    rep = V.judge(run, HELD, "base", "surfaces_other")
    row = {p["spec"]: p for p in rep["pipelines"]}
    assert row["surfaces_other"]["ndcg@10"] == pytest.approx(1.0)  # condensed: "abc", the LLM's own order
    assert row["surfaces_other"]["ndcg@10"] == row["candidates_only"]["ndcg@10"]
    assert row["surfaces_other"]["top1"] == 0.0  # top-1 reads the list as retrieved: "n" comes first
    # gold judges every passage: there "n" is what it is (irrelevant here), no list is condensed
    gold = {r.qid: {f"a{r.qid[1:]}": 1} for r in HELD}
    by_gold = {p["spec"]: p for p in V.judge(run, HELD, "base", "surfaces_other", gold)["pipelines"]}
    assert by_gold["surfaces_other"]["ndcg@10"] < by_gold["candidates_only"]["ndcg@10"] == pytest.approx(1.0)


def paired(a, b, lo, hi, p, n=100):
    return {"mean_a": a, "mean_b": b, "delta": b - a, "ci_low": lo, "ci_high": hi, "p_value": p, "n": n}


def test_the_verdict_sentence():
    rep = {"queries": 100, "llm": {"ndcg@10": paired(0.64, 0.71, 0.04, 0.10, 0.0001)}, "gold": {}}
    assert V.sentence(rep, "published") == (
        "On 100 held-out questions the LLM ranked, the distilled retriever agrees with the LLM better than the "
        "base: nDCG@10 .71 vs .64 (+.07, 95% CI +.04..+.10, p < .001); published.")
    worse = {"queries": 40, "llm": {"ndcg@10": paired(0.70, 0.65, -0.09, -0.01, 0.03, 40)}}
    s = V.sentence(worse, "not published")
    assert "worse than the base: nDCG@10 .65 vs .70 (-.05, 95% CI -.09..-.01, p = .03); not published." in s
    test = {"split": "test", "metrics": {"ndcg@10": paired(0.80, 0.86, 0.05, 0.07, 0.0001, 4610)}}
    assert "; on 4610 gold-judged test-split questions nDCG@10 .86 vs .80" in V.sentence(rep, "published", test)
    assert V.sentence({}, "published").startswith("No held-out labelled question")
    assert s.count(".") >= 1 and s.endswith("not published.")


def student_run(tmp_path, llm_delta, test_delta=None):
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "student").mkdir(parents=True)
    (run_dir / "student" / "model.safetensors").write_bytes(b"w")
    heldout = {} if test_delta is None else {
        "split": "test", "queries": 500, "metrics": {"ndcg@10": paired(0.8, 0.8 + test_delta, -0.01, 0.01, 0.5, 500)}}
    card = ModelCard(name="distilrag-r", created="now", corpus="toy",
                     verdict={"queries": 100, "llm": {"ndcg@10": paired(0.6, 0.6 + llm_delta, llm_delta - 0.03,
                                                                        llm_delta + 0.03, 0.2)}, "gold": {},
                              "pipelines": []},
                     heldout=heldout)
    return run_dir, card


def test_the_gate_refuses_a_worse_student_unless_forced(tmp_path, monkeypatch):
    from rag.embedder import published_path

    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    run_dir, card = student_run(tmp_path, -0.02)
    with pytest.raises(NotBetterThanBase, match="held-out queries, judged by the LLM") as e:
        publish(run_dir, card)
    assert e.value.sentence.endswith("; not published.") and "worse than the base" in e.value.sentence
    assert not (run_dir / "model").exists() and published_path("distilled", "toy") is None
    out = publish(run_dir, card, force=True)
    card_json = json.loads((out / "distilrag_card.json").read_text())
    assert card_json["verdict_sentence"].endswith("; published with --force.")
    assert ModelCard.read(out) == replace(card, verdict_sentence=card_json["verdict_sentence"],
                                          versions=card_json["versions"])  # the record round-trips
    assert "**Verdict.** On 100 held-out questions" in (out / "README.md").read_text()


def test_the_gate_publishes_a_better_student_even_when_its_ci_reaches_below_zero(tmp_path, monkeypatch):
    """The point estimate decides: a noisy but positive verdict is published (the CI is stated)."""
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    run_dir, card = student_run(tmp_path, 0.02)
    assert card.verdict["llm"]["ndcg@10"]["ci_low"] < 0 and gate(card) is None
    out = publish(run_dir, card)
    assert json.loads((out / "distilrag_card.json").read_text())["verdict_sentence"].endswith("; published.")
    # the shipped corpus's gold test split gates too
    run_dir2, card2 = student_run(tmp_path / "b", 0.02, test_delta=-0.01)
    assert "the test split, judged by gold" in gate(card2)
    # an old run without a verdict or test report falls back to dev
    assert "on dev" in gate(ModelCard("old", "toy", distill={"base_dev": {"ndcg@10": 0.5}, "best_dev": {"ndcg@10": 0.4}}))


def test_pipeline_orders_rerank_each_pair_once_across_pipelines(monkeypatch):
    import rag.pipelines as specs_mod
    import rag.rerank as rerank_mod
    from rag.corpus import Corpus
    from rag.records import Passage

    corpus = Corpus("toy", [Passage(d, f"text {d}") for d in "abcdef"])

    class Node:
        def __init__(self, d):
            self.node = type("N", (), {"node_id": d})()

    firsts = {"base": "abcd", "bm25": "dcba", "hybrid": "bdae"}
    monkeypatch.setattr(specs_mod, "retrieval_function",
                        lambda spec, corpus, depth: (lambda q: [Node(d) for d in firsts[spec]]))
    scored = []

    class FakeRerank:
        def __init__(self, model, top_n):
            pass

        def score(self, query, texts):
            scored.extend((query, t) for t in texts)
            return [{"a": 1, "b": 4, "c": 2, "d": 3, "e": 0}[t[-1]] for t in texts]

    monkeypatch.setattr(rerank_mod, "CrossEncoderRerank", FakeRerank)
    latency = {}
    got = V.pipeline_orders(["base", "bm25", "hybrid", "base+R", "bm25+R", "hybrid+R"], corpus,
                            {"q1": "question"}, progress=False, depth=4, latency_ms=latency)
    assert got["base"]["q1"] == list("abcd") and got["bm25"]["q1"] == list("dcba")
    assert got["base+R"]["q1"] == list("bdca") == got["bm25+R"]["q1"] and got["hybrid+R"]["q1"] == list("bdae")
    assert len(scored) == len(set(scored)) == 5  # a..e once each, over three reranked pipelines
    # Every pipeline has a latency; a reranked one pays its first stage plus `depth` pairs, even
    # when the pairs were scored for another pipeline already (a chat query pays them all).
    assert set(latency) == set(got) and all(v >= 0 for v in latency.values())
    assert latency["bm25+R"] >= latency["bm25"] and latency["hybrid+R"] >= latency["hybrid"]
    rep = V.judge({"base": got["base"], "bm25": got["bm25"]}, [LLMRanking("q1", list("abcd"), list("bdca"), "m", "p", "ql")], "base", "bm25",
                  latency_ms=latency)
    assert {r["spec"]: r["ms_per_query"] for r in rep["pipelines"]} == {"base": latency["base"], "bm25": latency["bm25"]}


def test_pipeline_specs_and_their_published_names(tmp_path):
    specs, base, student = V.pipeline_specs(tmp_path / "r")
    assert base == "base" and student == f"{tmp_path}/r/student" and len(specs) == 14
    assert {"bm25", "hybrid", f"hybrid:{student}", f"hybrid:{student}@fit", f"bm25+{tmp_path}/r/ranker"} <= set(specs)
    from rag.pipelines import published_name

    assert published_name(f"hybrid:{student}+{tmp_path}/r/ranker") == "hybrid:distilled+ranker"
    assert published_name(f"hybrid:{student}@0.3+{tmp_path}/r/ranker") == "hybrid:distilled@0.3+ranker"
    # what the retrain prints and the model card lists: the published names, never the run's paths
    row = {"spec": f"hybrid:{student}+{tmp_path}/r/ranker", "ndcg@10": 0.9, "ci_low": 0.8, "ci_high": 0.95,
           "top1": 0.8, "vs_base": {"delta": 0.1}}
    report = {"pipelines": [row], "queries": 20}
    assert V.pipelines_line(report).endswith("hybrid:distilled+ranker .90")
    assert "| hybrid:distilled+ranker |" in V.card_section(report) and str(tmp_path) not in V.card_section(report)
    assert "| hybrid:distilled+ranker (served) |" in V.card_section({**report, "best": row["spec"]})


def test_model_card_extends_the_one_sentence_transformers_generated():
    from retriever_training.publish import merge_cards

    generated = ("---\nlibrary_name: sentence-transformers\ntags:\n- sentence-transformers\n- loss:DistillKLDivLoss\n"
                 "pipeline_tag: sentence-similarity\n---\n\n# SentenceTransformer\n\n## Training Details\n"
                 "lr 4e-05\n\n## Citation\n\n### BibTeX\n@inproceedings{reimers-2019-sentence-bert}\n")
    ours = "---\nlibrary_name: sentence-transformers\ntags: [retrieval, distilrag]\n---\n# distilrag-x\n\n**Verdict.** better.\n"
    card = merge_cards(ours, generated)
    assert card.count("---\n") == 2 and card.startswith("---\n")
    import yaml

    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["tags"] == ["sentence-transformers", "loss:DistillKLDivLoss", "retrieval", "distilrag"]
    assert meta["pipeline_tag"] == "sentence-similarity"
    body = card.split("---\n", 2)[2]
    assert body.index("**Verdict.**") < body.index("## Training Details") < body.index("@inproceedings")
    assert merge_cards(ours, "") == ours


def test_a_refusal_on_too_few_held_out_questions_says_what_to_do():
    from retriever_training.verdict import refusal

    tie = {"n": 1, "delta": 0.0, "mean_a": 0.75, "mean_b": 0.75, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    why = refusal({"llm": {"ndcg@10": tie}})
    assert "1 held-out question cannot tell" in why and "--queries.n" in why
    many = {**tie, "n": 100}
    assert "cannot tell" not in refusal({"llm": {"ndcg@10": many}})


def test_model_card_reads_the_first_layout_and_refuses_what_is_not_a_card(tmp_path):
    (tmp_path / "distilrag_card.json").write_text(json.dumps(
        {"name": "old", "metrics": {"base": {"ndcg@10": 0.7}, "distilled": {"ndcg@10": 0.8}}, "unknown_key": 1,
         "verdict": "not a section"}))
    card = ModelCard.read(tmp_path)
    assert card.distill == {"base_dev": {"ndcg@10": 0.7}, "best_dev": {"ndcg@10": 0.8}} and card.verdict == {}
    (tmp_path / "distilrag_card.json").write_text("[1, 2]")
    assert ModelCard.read(tmp_path) is None and ModelCard.read(tmp_path / "nowhere") is None


def _fake_fusion(monkeypatch, order_for_weight):
    """retrieval_function for "hybrid@<w>" specs: the order order_for_weight(w, qid) gives."""
    import rag.pipelines as specs_mod

    class Node:
        def __init__(self, d):
            self.node = type("N", (), {"node_id": d})()

    calls = []

    def retrieval_function(spec, corpus, depth):
        calls.append(spec)
        w = float(spec.rpartition("@")[2])
        return lambda q: [Node(d) for d in order_for_weight(w, q)]

    monkeypatch.setattr(specs_mod, "retrieval_function", retrieval_function)
    return calls


def test_a_fitted_fusion_picks_the_weight_the_judge_prefers_and_names_it(monkeypatch):
    """Weights up to 0.3 put the judged passage first: the fit names 0.3 (of the tied ones, the
    nearest an even mix); "+ranker" reranks the fitted orders and comes back under that name."""
    import rag.rerank as rerank_mod
    from rag.corpus import Corpus
    from rag.records import Passage

    corpus = Corpus("toy", [Passage(d, f"text {d}") for d in "abcd"])
    queries = {f"q{i}": f"question {i}" for i in range(20)}
    calls = _fake_fusion(monkeypatch, lambda w, q: "abcd" if w <= 0.3 else "dcba")

    class FakeRerank:
        def __init__(self, model, top_n):
            pass

        def score(self, query, texts):
            return [{"a": 2, "b": 4, "c": 3, "d": 1}[t[-1]] for t in texts]

    monkeypatch.setattr(rerank_mod, "CrossEncoderRerank", FakeRerank)
    qrels = {q: {"a": 1} for q in queries}
    latency = {}
    got = V.pipeline_orders(["hybrid@fit", "hybrid@fit+R"], corpus, queries, depth=4, progress=False,
                            latency_ms=latency, qrels=qrels)
    assert set(got) == {"hybrid@0.3", "hybrid@0.3+R"} == set(latency)
    assert all(o == list("abcd") for o in got["hybrid@0.3"].values())
    assert all(o == list("bcad") for o in got["hybrid@0.3+R"].values())
    assert sorted(calls) == sorted(f"hybrid@{w:g}" for w in V.FUSION_WEIGHTS)  # the whole grid, once each
    with pytest.raises(ValueError, match="qrels"):
        V.pipeline_orders(["hybrid@fit"], corpus, queries, progress=False)


def test_a_fitted_fusion_is_scored_cross_fitted_not_on_the_queries_that_chose_it(monkeypatch):
    """Each query prefers its own weight (a noisy judge): fitted on all queries the weight looks
    perfect on some, but the score the verdict reports comes from weights the other half chose."""
    import hashlib

    from rag.corpus import Corpus
    from rag.metrics import per_query
    from rag.records import Passage

    corpus = Corpus("toy", [Passage(d, f"text {d}") for d in "ab"])
    queries = {f"q{i}": f"q{i}" for i in range(40)}  # the text is the qid: the fake retriever sees it
    half = {q: hashlib.sha256(q.encode()).digest()[0] & 1 for q in queries}
    # half 0's queries are served well by weight 0 only, half 1's by weight 1 only
    _fake_fusion(monkeypatch, lambda w, q: "ab" if w == (0.0 if half.get(q) == 0 else 1.0) else "ba")
    spec, orders, _ = V.fit_fusion("hybrid", corpus, queries, {q: {"a": 1} for q in queries}, depth=2, progress=False)
    assert spec in ("hybrid@0", "hybrid@1")
    run = {q: {d: 2.0 - i for i, d in enumerate(o)} for q, o in orders.items()}
    crossfit = per_query(run, {q: {"a": 1} for q in queries}, ["ndcg@10"])["ndcg@10"]
    assert all(v < 1.0 for v in crossfit.values())  # every query got the other half's weight: never its own


def test_a_fusion_fitted_to_the_llm_ignores_the_passages_it_never_ranked(monkeypatch):
    """Weights up to 0.3 put an unjudged passage first, then the LLM's top: on condensed lists they
    order the judged passages as the LLM does; counting "x" irrelevant would tie every weight."""
    from rag.corpus import Corpus
    from rag.records import Passage

    corpus = Corpus("toy", [Passage(d, f"text {d}") for d in "abx"])
    queries = {f"q{i}": f"question {i}" for i in range(20)}
    _fake_fusion(monkeypatch, lambda w, q: "xab" if w <= 0.3 else "bax")
    qrels, judged = {q: {"a": 1} for q in queries}, {q: {"a", "b"} for q in queries}
    assert V.fit_fusion("hybrid", corpus, queries, qrels, depth=3, progress=False, judged=judged)[0] == "hybrid@0.3"
    assert V.fit_fusion("hybrid", corpus, queries, qrels, depth=3, progress=False)[0] == "hybrid@0.5"


def test_a_refused_student_leaves_the_corpus_served_by_its_best_pipeline_without_it(tmp_path, monkeypatch):
    """Rust-book-like: the student is refused, BM25 beat the dense base; without this the chat fell
    back to the dense base, the worst first stage measured."""
    from rag.embedder import published_path, set_published
    from rag.pipelines import best_spec, pipeline_scores

    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DISTILRAG_DISTILLED", raising=False)
    monkeypatch.delenv("DISTILRAG_RANKER", raising=False)
    run_dir, card = student_run(tmp_path, -0.01)
    (run_dir / "ranker").mkdir()
    s, r = f"{run_dir}/student", f"{run_dir}/ranker"
    rows = [{"spec": f"hybrid:{s}@0.5", "ndcg@10": 0.77}, {"spec": "bm25", "ndcg@10": 0.76},
            {"spec": f"bm25+{r}", "ndcg@10": 0.75}, {"spec": "base", "ndcg@10": 0.66}]
    card = replace(card, verdict={**card.verdict, "pipelines": rows, "best": rows[0]["spec"]})
    with pytest.raises(NotBetterThanBase) as e:
        publish(run_dir, card)
    assert "worse than the base" in e.value.sentence and e.value.served.startswith(
        "This corpus is now served by bm25 (nDCG@10 .76 on the held-out questions)")
    assert published_path("distilled", "toy") is None and best_spec("toy") == "bm25"
    assert pipeline_scores("toy")[0] == {"bm25": 0.76, "bm25+ranker": 0.75, "base": 0.66}  # no student row
    assert published_path("ranker", "toy") == run_dir / "ranker"
    served = json.loads(published_path("pipelines", "toy").read_text())
    assert served["refused"] == e.value.sentence  # what the chat shows instead of "train one"
    # a distilled model published earlier keeps serving the corpus: this verdict did not judge it
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home2"))
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "modules.json").write_text("[]")
    set_published("distilled", earlier, "toy")
    with pytest.raises(NotBetterThanBase) as e:
        publish(run_dir, card)
    assert "published earlier for this corpus stays" in e.value.served
    assert published_path("pipelines", "toy") is None and published_path("distilled", "toy") == earlier
    # a published student's own verdict wins over a refused one's
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))
    better, better_card = student_run(tmp_path / "b", 0.03)
    better_card = replace(better_card, verdict={**better_card.verdict, "best_published": "hybrid:distilled"})
    publish(better, better_card)
    assert best_spec("toy") == "hybrid:distilled"
