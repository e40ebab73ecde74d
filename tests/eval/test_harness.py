"""The harness end to end with BM25 and a scripted LLM: files, metrics, resume, skips, report."""
import importlib.util
import json
from dataclasses import replace

import pytest

from rag.pipelines import slug
from eval.run import EvalConfig, main, ragas_subset, run_eval, select
from rag.records import append_jsonl, read_jsonl, write_jsonl
from tests.fakes import scripted_llm

PASSAGES = [
    ("sb#0", "Super Bowl 50", "The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50."),
    ("sb#1", "Super Bowl 50", "Super Bowl 50 was played at Levi's Stadium in Santa Clara, California."),
    ("am#0", "Amazon", "The Amazon rainforest covers most of the Amazon basin of South America."),
    ("ox#0", "Oxygen", "Oxygen is a chemical element with symbol O and atomic number 8."),
    ("ch#0", "Chloroplast", "Chloroplasts conduct photosynthesis in plant cells."),
]
QUERIES = [
    ("q1", "Which team won Super Bowl 50?", ["Denver Broncos"]),
    ("q2", "Where was Super Bowl 50 played?", ["Levi's Stadium"]),
    ("q3", "What is the atomic number of oxygen?", ["8", "eight"]),
    ("q4", "What do chloroplasts conduct?", ["photosynthesis"]),
]
QRELS = {"q1": "sb#0", "q2": "sb#1", "q3": "ox#0", "q4": "ch#0"}


def answer_from_prompt(prompt: str) -> str:
    """Answers the first source's first words, citing it: deterministic and sometimes right."""
    if "Broncos" in prompt and "Which team" in prompt:
        return "The Denver Broncos won [1]."
    return "I don't know based on the provided documents."


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("DISTILRAG_HOME", str(tmp_path / "home"))  # a private answer cache per test
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": d, "title": t, "text": x} for d, t, x in PASSAGES])
    write_jsonl(tmp_path / "queries.jsonl", [{"qid": q, "query": t, "answers": a} for q, t, a in QUERIES])
    (tmp_path / "qrels.tsv").write_text("".join(f"{q}\t0\t{d}\t1\n" for q, d in QRELS.items()))
    return tmp_path


def cfg_for(tiny, **kw):
    return EvalConfig(corpus=str(tiny / "corpus.jsonl"), split="", queries=str(tiny / "queries.jsonl"),
                      qrels=str(tiny / "qrels.tsv"), retrievers=("bm25",), top_k=2, depth=5, **kw)


def test_full_run_writes_everything_and_resumes(tiny):
    llm = scripted_llm(answer_from_prompt)
    run_dir = run_eval(cfg_for(tiny), out=tiny / "run", llm=llm, progress=False)
    d = run_dir / "bm25"
    recs = list(read_jsonl(d / "answers.jsonl"))
    assert [r["qid"] for r in recs] == ["q1", "q2", "q3", "q4"]
    r1 = recs[0]
    assert r1["retrieved"][0] == "sb#0" and r1["cited_docids"] == ["sb#0"]
    assert len(r1["contexts"]) == 2 and r1["qa"]["em"] == 0.0 and r1["qa"]["answer_contains_ref"] == 1.0
    assert {"retrieve_s", "first_token_s", "total_s"} <= set(r1["timings"])
    m = json.loads((d / "metrics.json").read_text())
    assert m["ir"]["recall@1"] == 1.0 and m["ir"]["n_judged"] == 4
    assert m["answers"]["no_answer_rate"] == 0.75 and m["answers"]["cited_relevant"] == 1.0
    assert (d / "run.trec").read_text().startswith("q1 Q0 sb#0 1 ")
    for f in ("summary.json", "report.md", "report.html"):
        assert (run_dir / f).exists(), f
    if importlib.util.find_spec("matplotlib"):
        assert (run_dir / "plots" / "metric_bars.png").exists() and (run_dir / "plots" / "recall_curve.png").exists()
    # Resume: nothing is answered again.
    calls = llm.calls
    run_eval(cfg_for(tiny), out=tiny / "run", llm=llm, progress=False)
    assert llm.calls == calls


def test_interrupted_run_redoes_only_missing_and_failed(tiny):
    run_dir = run_eval(cfg_for(tiny), out=tiny / "run", llm=scripted_llm(answer_from_prompt), progress=False)
    path = run_dir / "bm25" / "answers.jsonl"
    recs = list(read_jsonl(path))
    recs[1] = {**recs[1], "error": "APITimeoutError: slow"}
    write_jsonl(path, recs[:3])  # q4 lost, q2 failed
    llm = scripted_llm(answer_from_prompt)
    run_eval(replace(cfg_for(tiny), answer_cache=False), out=tiny / "run", llm=llm, progress=False)
    assert llm.calls == 2
    # With the cache the two redone questions are served from the first run's answers.
    write_jsonl(path, recs[:3])
    llm = scripted_llm(answer_from_prompt)
    run_eval(cfg_for(tiny), out=tiny / "run", llm=llm, progress=False)
    assert llm.calls == 0 and len({r["qid"] for r in read_jsonl(path)}) == 4


def test_retrieval_only_needs_no_llm_and_changed_settings_refuse_to_resume(tiny):
    run_dir = run_eval(cfg_for(tiny, retrieval_only=True), out=tiny / "ir", progress=False)
    m = json.loads((run_dir / "bm25" / "metrics.json").read_text())
    assert m["ir"]["mrr@10"] == 1.0 and m["qa"] == {"answer_in_context": 1.0} and "answers" not in m
    with pytest.raises(SystemExit, match="different top_k"):
        run_eval(replace(cfg_for(tiny, retrieval_only=True), top_k=3), out=tiny / "ir", progress=False)


def test_unpublished_distilled_is_skipped_with_a_message(tiny, capsys, monkeypatch):
    monkeypatch.delenv("DISTILRAG_DISTILLED", raising=False)
    cfg = replace(cfg_for(tiny, retrieval_only=True), retrievers=("distilled", "bm25"))
    run_dir = run_eval(cfg, out=tiny / "ir2", progress=False)
    assert "skipping distilled: No distilled retriever is published" in capsys.readouterr().err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(summary["retrievers"]) == ["bm25"] and "distilled" in summary["skipped"]
    assert "Skipped `distilled`" in (run_dir / "report.md").read_text()
    only = replace(cfg, retrievers=("distilled",))
    with pytest.raises(SystemExit, match="no retriever could be evaluated"):
        run_eval(only, out=tiny / "ir3", progress=False)


def test_reference_free_corpus_reports_agreement(tiny, capsys):
    (tiny / "questions.txt").write_text("Which team won Super Bowl 50?\nWhat do chloroplasts conduct?\n")
    cfg = EvalConfig(corpus=str(tiny / "corpus.jsonl"), split="", queries=str(tiny / "questions.txt"),
                     retrievers=("bm25", "bm25+ranker"), top_k=2, depth=5, retrieval_only=True)
    run_dir = run_eval(cfg, out=tiny / "free", progress=False)  # no ranker published: skipped
    assert "none of the 2 questions has answers and there are no qrels" in capsys.readouterr().err
    m = json.loads((run_dir / "bm25" / "metrics.json").read_text())
    assert "ir" not in m and m["n_answered"] == 2
    from eval.metrics_table import agreement

    recs = list(read_jsonl(run_dir / "bm25" / "answers.jsonl"))
    ag = agreement({"a": recs, "b": recs}, k=2)
    assert ag["a vs b"]["overlap@2"] == 1.0 and ag["a vs b"]["kendall_tau"] == 1.0


def test_report_compares_against_base_and_draws_label_efficiency(tiny, monkeypatch):
    from eval.report import write_report

    from eval.report import label_efficiency_points

    corpus = cfg_for(tiny).corpus
    for name, made_for, points in (("retrain-250", corpus, [(250, 0.7), (1000, 0.8)]),
                                   ("other-corpus", "squad_dev", [(500, 0.5)])):
        trainer = tiny / "runs" / name
        trainer.mkdir(parents=True)
        (trainer / "metrics.json").write_text(json.dumps({"label_efficiency": [
            {"n_labels": n, "ndcg@10": v} for n, v in points]}))
        (trainer / "config.json").write_text(json.dumps({"label": {"corpus": made_for}}))
    # only the runs made for the evaluated corpus: another corpus's dev figures are another scale
    assert label_efficiency_points(tiny / "runs", corpus) == [("retrain-250", 250.0, 0.7), ("retrain-250", 1000.0, 0.8)]
    run_dir = run_eval(cfg_for(tiny, retrieval_only=True), out=tiny / "rep", progress=False)
    # A second "retriever": a copy of bm25 under the name base, so the comparison table appears.
    import shutil

    shutil.copytree(run_dir / "bm25", run_dir / "base")
    s = json.loads((run_dir / "summary.json").read_text())
    s["retrievers"]["base"] = s["retrievers"]["bm25"]
    (run_dir / "summary.json").write_text(json.dumps(s))
    pytest.importorskip("matplotlib")
    md = write_report(run_dir).read_text()
    assert "Paired bootstrap: bm25 vs base" in md and "+0.000" in md
    assert (run_dir / "plots" / "label_efficiency.png").exists()
    assert json.loads((run_dir / "comparisons.json").read_text())["bm25 vs base"]["ndcg@10"]["p_value"] == 1.0


def test_cli_help_and_helpers(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--retrieval-only" in capsys.readouterr().out
    assert slug("/models/my-distilled+ranker") == "models-my-distilled+ranker" and slug("hybrid:distilled") == "hybrid-distilled"
    qs = [type("Q", (), {"qid": f"q{i}"})() for i in range(10)]
    assert [q.qid for q in select(qs, 3, 0)] == [q.qid for q in select(qs, 3, 0)]
    assert ragas_subset([f"q{i}" for i in range(10)], 4, 0) == ragas_subset([f"q{i}" for i in range(9, -1, -1)], 4, 0)


def test_model_folders_of_different_runs_get_different_directories(tiny):
    assert slug("runs/a/student") == "a-student" and slug("runs/b/student") == "b-student"
    assert slug("base+runs/a/ranker") == "base+a-ranker" and slug("hybrid:distilled") == "hybrid-distilled"
    assert slug("hybrid:runs/a/student") == "hybrid-a-student" != slug("runs/a/student")
    assert slug("hybrid:runs/a/student+runs/a/ranker") == "hybrid-a-student+a-ranker"
    with pytest.raises(SystemExit, match="share a directory"):
        run_eval(replace(cfg_for(tiny), retrievers=("x/a/student", "y/a/student"), retrieval_only=True),
                 out=tiny / "run", progress=False)


def test_answers_of_other_weights_are_kept_aside_and_not_resumed(tiny, monkeypatch):
    """After a retrain "distilled" names another model: its old answers must not count as the new one's."""
    import eval.run as harness

    weights = {"embedder": "w1"}
    monkeypatch.setattr(harness, "spec_identity", lambda spec, corpus=None: dict(weights))
    run_eval(cfg_for(tiny), out=tiny / "run", llm=scripted_llm(answer_from_prompt), progress=False)
    llm = scripted_llm(answer_from_prompt)
    run_eval(cfg_for(tiny), out=tiny / "run", llm=llm, progress=False)
    assert llm.calls == 0  # same weights: resumed
    weights["embedder"] = "w2"
    run_eval(replace(cfg_for(tiny), answer_cache=False), out=tiny / "run", llm=llm, progress=False)
    assert llm.calls == len(QUERIES)  # other weights: every question asked again
    aside = [p for p in (tiny / "run").iterdir() if p.name.startswith("bm25.replaced-")]
    assert len(aside) == 1 and len(list(read_jsonl(aside[0] / "answers.jsonl"))) == len(QUERIES)
    assert json.loads((tiny / "run" / "bm25" / "retriever.json").read_text())["embedder"] == "w2"


def test_identity_follows_what_distilled_means(tmp_path, monkeypatch):
    from rag.pipelines import spec_identity as retriever_identity

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "modules.json").write_text("[]")
        (tmp_path / name / "model.safetensors").write_bytes(f"weights of {name}".encode())
    monkeypatch.setenv("DISTILRAG_DISTILLED", str(tmp_path / "a"))
    first = retriever_identity("hybrid:distilled")
    assert retriever_identity("distilled") == first and retriever_identity("bm25") == {}
    monkeypatch.setenv("DISTILRAG_DISTILLED", str(tmp_path / "b"))
    assert retriever_identity("hybrid:distilled") != first
    (tmp_path / "b" / "model.safetensors").write_bytes(b"retrained in place")
    monkeypatch.setenv("DISTILRAG_DISTILLED", str(tmp_path / "a"))
    assert retriever_identity("distilled") == first
    monkeypatch.setenv("DISTILRAG_DISTILLED", str(tmp_path / "missing"))
    assert retriever_identity("distilled") == {"unresolved": True}
    assert retriever_identity(f"bm25+{tmp_path / 'b'}")["reranker"] != retriever_identity(f"bm25+{tmp_path / 'a'}")["reranker"]


def test_a_stale_index_is_rebuilt_before_retrieval(tiny, monkeypatch, capsys):
    """An index of the model "distilled" meant before a retrain is rebuilt, not queried or fatal."""
    import rag.index
    import rag.retrievers
    from rag.pipelines import retrieval_function as build_retrieval
    from rag.corpus import load_corpus

    calls, stale = [], [True]

    def fake_get_index(corpus, embedder, rebuild=False):
        calls.append((embedder, rebuild))
        if rebuild:
            stale[0] = False
        elif stale[0]:
            raise rag.index.IndexMismatchError("The index at X was built with embedder 'distilled' (old). Rebuild it: ...")

    def fake_make_retriever(name, corpus, top_k):  # loads its index as the real one does
        if (emb := rag.retrievers.spec_embedder(name)) is not None:
            rag.index.get_index(corpus, emb)
        return object()

    monkeypatch.setattr(rag.index, "get_index", fake_get_index)
    monkeypatch.setattr(rag.retrievers, "make_retriever", fake_make_retriever)
    corpus = load_corpus(str(tiny / "corpus.jsonl"))
    build_retrieval("hybrid:distilled", corpus, 5)
    assert calls == [("distilled", False), ("distilled", True), ("distilled", False)]
    assert "Rebuilding it." in capsys.readouterr().err
    calls.clear()
    build_retrieval("hybrid:distilled", corpus, 5)
    assert calls == [("distilled", False)]  # a fresh index is loaded once, not checked first
    calls.clear()
    build_retrieval("bm25", corpus, 5)
    assert calls == []


def test_report_has_the_ragas_selection_table_when_answers_were_judged(tiny):
    from eval.report import write_report

    run_dir = run_eval(cfg_for(tiny), out=tiny / "run", llm=scripted_llm(answer_from_prompt), progress=False)
    write_jsonl(run_dir / "bm25" / "ragas.jsonl", [
        {"qid": q, "judge": "fake", "metrics": {"faithfulness": {"value": v, "status": "ok", "seconds": 3}}}
        for q, v in (("q1", 0.9), ("q2", 0.1))])
    md = write_report(run_dir).read_text()
    assert "RAGAS metric selection" in md and "| faithfulness |" in md
    sel = json.loads((run_dir / "ragas_selection.json").read_text())
    assert sel[0]["metric"] == "faithfulness" and sel[0]["n"] == 2


def test_rounds_are_growing_seeded_prefixes_and_one_for_retrieval_only():
    from eval.run import answer_rounds

    qs = [f"q{i}" for i in range(20)]
    rounds = answer_rounds(qs, EvalConfig(round_size=8))
    assert [len(r) for r in rounds] == [8, 16, 20] and sorted(rounds[-1]) == sorted(qs)
    assert all(rounds[i] == rounds[i + 1][:len(rounds[i])] for i in range(len(rounds) - 1))
    assert rounds[0] != qs[:8]  # a shuffle: the first round is not the first questions of the file
    assert answer_rounds(qs, EvalConfig(round_size=8, seed=1))[0] != rounds[0]  # the seed decides
    assert answer_rounds(qs, EvalConfig(round_size=8)) == rounds  # seeded
    assert answer_rounds(qs, EvalConfig(round_size=8, retrieval_only=True)) == [qs]


def test_a_run_stopped_mid_way_leaves_a_paired_partial_report(tiny, monkeypatch):
    import eval.run as run_mod

    order = []
    real = run_mod.finish_retriever

    def spy(answerer, questions, *a, **kw):
        order.append((answerer.spec, len(questions)))
        return real(answerer, questions, *a, **kw)

    monkeypatch.setattr(run_mod, "finish_retriever", spy)

    def dies_on_fourth_call(prompt, calls=[]):
        calls.append(prompt)
        if len(calls) == 4:
            raise KeyboardInterrupt  # the user (or the machine) stops the run
        return answer_from_prompt(prompt)

    cfg = replace(cfg_for(tiny, round_size=2), retrievers=("bm25", "bm25+none"))
    monkeypatch.setattr(run_mod, "spec_identity", lambda spec, corpus: {"spec": spec})
    real_rf = run_mod.retrieval_function  # the second "retriever" is BM25 under another name
    built = []

    def build(spec, corpus, *a, **kw):
        built.append(spec)
        return real_rf("bm25", corpus, *a, **kw)

    monkeypatch.setattr(run_mod, "retrieval_function", build)
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, out=tiny / "run", llm=scripted_llm(dies_on_fourth_call), progress=False)
    # Round 1 (2 questions) was finished by both retrievers before round 2 began; round 2 stopped
    # in its second question (the retrievers' equal prompts are paid once).
    assert order == [("bm25", 2), ("bm25+none", 2)]
    assert built == ["bm25", "bm25+none"]  # each pipeline built once, not once per round
    summary = json.loads((tiny / "run" / "summary.json").read_text())
    round1 = summary["questions"]["qids"]
    assert summary["questions"] == {"answered_by_all": 2, "asked": 4, "qids": round1}
    assert set(summary["retrievers"]) == {"bm25", slug("bm25+none")}
    assert "Partial run**: 2 of 4" in (tiny / "run" / "report.md").read_text()
    # The run answered a question of round 2 before it stopped. Resumed and stopped again, the
    # report rewritten after round 1 (from the cache) covers round 1's two questions only.
    assert len((tiny / "run" / "bm25" / "answers.jsonl").read_text().splitlines()) == 3

    def stops(prompt):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, out=tiny / "run", llm=scripted_llm(stops), progress=False)
    comps = json.loads((tiny / "run" / "comparisons.json").read_text())
    assert {c["n"] for pair in comps.values() for c in pair.values()} == {2}
    assert "| bm25 | 2 |" in (tiny / "run" / "report.md").read_text()
    # Going on: the same command finishes and the report is whole.
    llm = scripted_llm(answer_from_prompt)
    run_eval(cfg, out=tiny / "run", llm=llm, progress=False)
    summary = json.loads((tiny / "run" / "summary.json").read_text())
    assert summary["questions"]["answered_by_all"] == summary["questions"]["asked"] == 4
    assert "Partial run" not in (tiny / "run" / "report.md").read_text()


def test_a_question_is_asked_of_every_retriever_in_a_row_with_alike_prompts_adjacent(tiny, monkeypatch):
    """The LLM server keeps the previous prompt's KV cache: prompts of one question that begin
    with the same passages must follow each other, and a retriever whose prompt is answered
    already (same passages) pays nothing."""
    import eval.run as run_mod
    from eval.answering import prompt_order

    real_rf = run_mod.retrieval_function

    def build(spec, corpus, *a, **kw):
        bm25 = real_rf("bm25", corpus, *a, **kw)
        if spec == "bm25":
            return bm25
        # "rev": BM25's ranking upside down; "same": BM25's under another name
        return (lambda q, qid=None: list(reversed(bm25(q)))) if spec == "rev" else bm25

    monkeypatch.setattr(run_mod, "retrieval_function", build)
    monkeypatch.setattr(run_mod, "spec_identity", lambda spec, corpus: {"spec": spec})
    prompts = []
    llm = scripted_llm(lambda p: prompts.append(p) or answer_from_prompt(p))
    cfg = replace(cfg_for(tiny, round_size=0), retrievers=("rev", "bm25", "same"), depth=5)
    run_eval(cfg, out=tiny / "run", llm=llm, progress=False)
    questions = [q for _, q, _ in QUERIES]
    asked = [next(q for q in questions if q in p) for p in prompts]
    # Question by question (4 questions x 2 distinct prompts: "same" repeats bm25's), never interleaved.
    assert len(prompts) == 8 and asked == [q for q in questions for _ in range(2)]
    records = {spec: {r["qid"]: r for r in read_jsonl(tiny / "run" / slug(spec) / "answers.jsonl")}
               for spec in cfg.retrievers}
    assert all(len(r) == 4 for r in records.values())
    assert all(records["same"][q]["cached"] and not records["bm25"][q].get("cached") for q in records["bm25"])

    class N:  # what prompt_order reads of a retrieved node: its id
        def __init__(self, docid):
            self.node = type("Node", (), {"node_id": docid})()

    got = [(name, [N(d) for d in ids], None) for name, ids in
           [("a", ["x", "y", "z"]), ("b", ["w", "y"]), ("c", ["x", "y", "q"]), ("d", ["x", "k"])]]
    assert [g[0] for g in prompt_order(got, top_k=3)] == ["b", "d", "c", "a"]
    # only the top-k passages are the prompt: prompts alike in them keep the retrievers' order
    assert [g[0] for g in prompt_order(got, top_k=1)] == ["b", "a", "c", "d"]


def test_weighted_hybrid_specs_parse_and_name_their_directories():
    from rag.errors import UserError
    from rag.pipelines import slug
    from rag.retrievers import spec_embedder, split_hybrid

    assert split_hybrid("hybrid") == ("base", None) and split_hybrid("hybrid:distilled@0.3") == ("distilled", 0.3)
    assert split_hybrid("hybrid@1") == ("base", 1.0) and split_hybrid("bm25") is None and split_hybrid("base") is None
    assert spec_embedder("hybrid:runs/a/student@0.7") == "runs/a/student"
    assert slug("hybrid:runs/a/student@0.7+runs/a/ranker") == "hybrid-a-student@0.7+a-ranker" != slug("hybrid:runs/a/student")
    for bad in ("hybrid@1.5", "hybrid:distilled@x", "hybrid@-0.1"):
        with pytest.raises(UserError, match="from 0 to 1"):
            split_hybrid(bad)


def test_eval_compares_the_corpus_best_pipeline_by_default(monkeypatch, tmp_path):
    """Without --retrievers the comparison includes what the chat serves for that corpus."""
    import eval.run as run_mod
    import rag.pipelines

    monkeypatch.setattr(rag.pipelines, "best_spec", lambda corpus, fallback="base":
                        "hybrid:distilled@0.3+ranker" if corpus == "mine" else fallback)
    seen = []
    monkeypatch.setattr(run_mod, "run_eval", lambda cfg, **kw: seen.append(cfg.retrievers) or tmp_path)
    assert main(["--corpus", "mine", "--retrieval-only"]) == 0
    assert main(["--corpus", "theirs", "--retrieval-only"]) == 0
    assert main(["--corpus", "mine", "--retrieval-only", "--retrievers", "bm25"]) == 0
    assert seen == [("base", "distilled", "bm25", "hybrid", "hybrid:distilled@0.3+ranker"),
                    ("base", "distilled", "bm25", "hybrid"), ("bm25",)]


def test_ragas_without_a_default_metric_fails_before_any_answer(tiny):
    """No references and the embedded judge: nothing to judge by default, said before paying answers."""
    from rag.errors import UserError

    write_jsonl(tiny / "noref.jsonl", [{"qid": q, "query": t} for q, t, _ in QUERIES])
    llm = scripted_llm(answer_from_prompt)
    cfg = replace(cfg_for(tiny, ragas_n=2), queries=str(tiny / "noref.jsonl"))
    with pytest.raises(UserError, match="--judge-endpoint"):
        run_eval(cfg, out=tiny / "run", llm=llm, progress=False)
    assert llm.calls == 0 and not (tiny / "run").exists()


@pytest.mark.parametrize("metric, judged_early", [("string_presence", True), ("faithfulness", False)])
def test_string_metrics_are_judged_every_round_llm_metrics_after_the_last(tiny, metric, judged_early):
    """A run stopped in its second round has free string-metric judgements of the first, no paid ones."""
    pytest.importorskip("ragas")
    from eval.ragas_eval import JudgeConfig

    calls = []

    def stop_in_round_two(prompt):
        calls.append(prompt)
        if len(calls) > 2:  # round 1 is two questions for the one retriever
            raise KeyboardInterrupt
        return answer_from_prompt(prompt)

    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg_for(tiny, ragas_n=4, round_size=2), out=tiny / "run", llm=scripted_llm(stop_in_round_two),
                 progress=False, judge_cfg=JudgeConfig(metrics=(metric,)))
    answered = {r["qid"]: r for r in read_jsonl(tiny / "run" / "bm25" / "answers.jsonl")}
    path = tiny / "run" / "bm25" / "ragas.jsonl"
    judged = {r["qid"]: r["metrics"][metric]["value"] for r in read_jsonl(path)} if path.exists() else {}
    assert len(answered) == 2
    if not judged_early:
        assert judged == {}
        return
    assert judged == {q: float(r["references"][0] in r["answer"]) for q, r in answered.items()}


def test_ragas_judges_one_draw_of_the_whole_run_whatever_the_rounds(tiny):
    """--ragas-n M names the same M questions however the run is cut into rounds."""
    pytest.importorskip("ragas")
    from eval.ragas_eval import JudgeConfig

    run_eval(cfg_for(tiny, ragas_n=2, round_size=2), out=tiny / "run", llm=scripted_llm(answer_from_prompt),
             progress=False, judge_cfg=JudgeConfig(metrics=("string_presence",)))
    judged = {r["qid"] for r in read_jsonl(tiny / "run" / "bm25" / "ragas.jsonl")}
    assert judged == set(ragas_subset([q for q, _, _ in QUERIES], 2, 0))


def test_the_judge_is_the_answering_llm_unless_named(monkeypatch):
    """DISTILRAG_LLM_* (or --endpoint) configure the judge too; --judge-* name another."""
    from eval.run import build_parser, judge_config
    from rag.llm import LLMConfig

    monkeypatch.setenv("DISTILRAG_LLM_ENDPOINT", "http://farm.example/v1")
    monkeypatch.setenv("DISTILRAG_LLM_MODEL", "big")
    monkeypatch.setenv("DISTILRAG_LLM_API_KEY_ENV", "FARM_KEY")
    a = build_parser().parse_args(["--ragas-n", "5"])
    j = judge_config(a, LLMConfig.from_env())
    assert (j.endpoint, j.model, j.api_key_env) == ("http://farm.example/v1", "big", "FARM_KEY")
    a = build_parser().parse_args(["--judge-endpoint", "http://judge.example/v1", "--judge-model", "j"])
    j = judge_config(a, LLMConfig.from_env())
    assert (j.endpoint, j.model, j.api_key_env) == ("http://judge.example/v1", "j", "OPENAI_API_KEY")
    monkeypatch.delenv("DISTILRAG_LLM_ENDPOINT")
    monkeypatch.delenv("DISTILRAG_LLM_MODEL")
    assert judge_config(build_parser().parse_args([]), LLMConfig.from_env()).endpoint == "local"


def test_dry_run_prices_ragas_from_earlier_judgements_by_the_same_judge(tiny):
    from eval.dry_run import dry_run
    from eval.ragas_eval import JudgeConfig
    from rag.llm import LLMConfig

    earlier = tiny / "runs" / "eval" / "old" / "base" / "ragas.jsonl"
    write_jsonl(earlier, [
        {"qid": "x1", "judge": LLMConfig().model_name, "metrics": {"faithfulness": {"seconds": 30.0, "status": "ok"}}},
        {"qid": "x2", "judge": LLMConfig().model_name, "metrics": {"faithfulness": {"seconds": 40.0, "status": "parse_error"}}},
        {"qid": "x3", "judge": "another-model", "metrics": {"faithfulness": {"seconds": 999.0, "status": "ok"}}}])
    cfg = cfg_for(tiny, ragas_n=2)
    judge = JudgeConfig(metrics=("faithfulness", "context_recall", "string_presence"))
    (line,) = dry_run(cfg, out=str(tiny / "run"), runs_root=tiny / "runs" / "eval", judge_cfg=judge).ragas
    assert "2 samples to judge x 3 metrics" in line and "~1.2 min at 35.0 s a sample" in line
    assert line.endswith("never timed with this judge: context_recall")
    (free,) = dry_run(cfg, out=str(tiny / "run"), runs_root=tiny / "runs" / "eval",
                      judge_cfg=JudgeConfig(metrics=("rouge_score",))).ragas
    assert "no judge calls" in free
    run_eval(cfg, out=tiny / "run", llm=scripted_llm(answer_from_prompt), progress=False,
             judge_cfg=JudgeConfig(metrics=("rouge_score",)))
    (after,) = dry_run(cfg, out=str(tiny / "run"), judge_cfg=JudgeConfig(metrics=("rouge_score",))).ragas
    assert "0 samples to judge" in after  # a rerun judges nothing again
    # A metric added later is priced for the samples that lack it only: faithfulness (35 s) is
    # judged for one of the two samples already, context recall (10 s) for neither.
    write_jsonl(tiny / "runs" / "eval" / "old" / "bm25" / "ragas.jsonl", [
        {"qid": "x4", "judge": LLMConfig().model_name, "metrics": {"context_recall": {"seconds": 10.0, "status": "ok"}}}])
    first = ragas_subset([q for q, _, _ in QUERIES], 2, 0)[0]
    append_jsonl(tiny / "run" / "bm25" / "ragas.jsonl", {"qid": first, "judge": LLMConfig().model_name,
                                                         "metrics": {"faithfulness": {"seconds": 35.0, "status": "ok"}}})
    (more,) = dry_run(cfg, out=str(tiny / "run"), runs_root=tiny / "runs" / "eval",
                      judge_cfg=JudgeConfig(metrics=("faithfulness", "context_recall"))).ragas
    assert "2 samples to judge x 2 metrics" in more and "~0.9 min at 45.0 s a sample" in more  # 35 + 2 x 10 s


def test_cli_dry_run_refuses_ragas_without_a_default_metric(tiny, capsys):
    write_jsonl(tiny / "noref.jsonl", [{"qid": q, "query": t} for q, t, _ in QUERIES])
    rc = main(["--corpus", str(tiny / "corpus.jsonl"), "--split", "", "--queries", str(tiny / "noref.jsonl"),
               "--qrels", str(tiny / "qrels.tsv"), "--retrievers", "bm25", "--out", str(tiny / "run"),
               "--ragas-n", "2", "--dry-run"])
    assert rc == 2 and "--judge-endpoint" in capsys.readouterr().err
