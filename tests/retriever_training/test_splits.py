"""Which queries teach and which judge: the log's rest feeds the student, held-out labelled queries
reach neither ranker nor student, and what cannot run fails before any LLM or training time."""
import pytest

from rag.config import ConfigError, load_sections
from rag.corpus import Corpus
from rag.records import Candidate, CandidateList, LLMRanking, Passage
from rag.questions import QuestionsError
from rag.questions import read_questions as read_query_file
from retriever_training.queries import QueriesConfig, QueriesError, select_queries, unlabelled_pool
from retriever_training.recipe import SECTIONS
from retriever_training.splits import (check_selected, dev_set, heldout_ids, llm_qrels, preflight,
                                       teacher_lists)
from retriever_training.train_ranker import split_heldout


def write_log(path, n=100):
    path.write_text("".join(f"question number {i}?\n" for i in range(n)) + "question number 3?\n")  # one duplicate
    return path


def ranking(qid, docs=("a", "b", "c", "d")):
    return LLMRanking(qid=qid, docids_in=list(docs), ranked_docids=list(reversed(docs)), scores=[0.0] * len(docs),
                      model="m", prompt_id="p", mode="query_likelihood")


def clist(qid, n=4):
    return CandidateList(qid, f"text of {qid}", "hybrid", [Candidate(f"d{i}", 1.0, i + 1) for i in range(n)])


def test_unlabelled_pool_from_a_file_log(tmp_path):
    log = write_log(tmp_path / "log.txt")
    cfg = QueriesConfig(source="file", file=str(log), n=30, seed=0)
    labelled = select_queries(cfg, "unused")
    assert len(labelled) == 30
    ids = {q.qid for q in labelled}
    pool = unlabelled_pool(cfg, "unused", ids, 1000)
    assert len(pool) == 70  # the other 70 distinct questions of the log, the duplicate dropped
    assert not ids & {q.qid for q in pool} and len({q.qid for q in pool}) == 70
    capped = unlabelled_pool(cfg, "unused", ids, 20)
    assert len(capped) == 20 and [q.qid for q in capped] == [q.qid for q in unlabelled_pool(cfg, "unused", ids, 20)]
    other_seed = unlabelled_pool(QueriesConfig(source="file", file=str(log), n=30, seed=1), "unused", ids, 20)
    assert [q.qid for q in other_seed] != [q.qid for q in capped]
    assert unlabelled_pool(cfg, "unused", ids, 0) == []
    # A labels dir written with other ids for the same questions: their texts keep them out too.
    texts = {q.query.upper() for q in labelled}
    assert not texts & {q.query.upper() for q in unlabelled_pool(cfg, "unused", {"old-id"}, 1000, texts)}


def test_heldout_queries_reach_neither_ranker_nor_student():
    rankings = [ranking(f"q{i}") for i in range(200)]
    train, held = split_heldout(rankings, 0.1)
    held_ids = {r.qid for r in held}
    assert 5 < len(held_ids) < 40 and held_ids == heldout_ids([r.qid for r in rankings], 0.1)
    assert not held_ids & {r.qid for r in train}  # the ranker's training set
    labelled = {r.qid for r in rankings}
    cands = [clist(r.qid) for r in rankings] + [clist("selected-not-ranked")]
    extra = [clist(f"u{i}") for i in range(50)] + [clist(sorted(held_ids)[0])]  # a held-out id sneaking in
    student = {c.qid for c in teacher_lists(cands, extra, labelled, held_ids)}
    assert not student & held_ids
    assert student == (labelled - held_ids) | {f"u{i}" for i in range(50)}
    # The same qids are held out on every run (resumes, repeats).
    assert {r.qid for r in split_heldout(rankings, 0.1)[1]} == held_ids


def test_dev_from_heldout_labelled_queries_when_the_corpus_has_no_dev_split():
    held = [ranking("h1", ("a", "b", "c", "d")), ranking("h2", ("e", "f", "g", "h"))]
    dev, qrels, source = dev_set("no-such-corpus", {}, held, {"h1": "one?", "h2": "two?"}, 400, 0)
    assert {q.qid for q in dev} == {"h1", "h2"} and "held-out" in source
    assert qrels["h1"] == {"d": 3, "c": 2, "b": 1}  # the LLM's order as graded relevance
    assert llm_qrels(held, grades=1) == {"h1": {"d": 1}, "h2": {"h": 1}}


def cfgs_for(*overrides):
    return load_sections(None, SECTIONS, ["label.corpus=no-such-corpus", *overrides])


def test_preflight_reports_what_cannot_run_before_any_llm_time(tmp_path):
    log = write_log(tmp_path / "log.txt", 5)
    with pytest.raises(ConfigError, match="no dev split.*holds out none"):
        preflight(cfgs_for("queries.source=file", f"queries.file={log}"), {})
    with pytest.raises(ConfigError, match="no dev split"):
        preflight(cfgs_for("queries.source=file", f"queries.file={write_log(tmp_path / 'big.txt')}",
                           "ranker.heldout_fraction=0"), {})
    plan = preflight(cfgs_for("queries.source=file", f"queries.file={tmp_path / 'big.txt'}"), {})
    # the log's 100 distinct questions, all labelled (queries.n 1,000): none left for the ranker alone
    assert plan == {"dev": "heldout", "labelled_planned": 100, "pool": 100, "test": False, "test_queries": 0}
    # on the selected queries: something must be held out, something left to train on
    cands = [clist(f"q{i}") for i in range(3)]
    with pytest.raises(ConfigError, match="held-out fraction"):
        check_selected(cfgs_for("ranker.heldout_fraction=0.0001"), cands, {"dev": "heldout"})
    with pytest.raises(ConfigError, match="none is left to train"):
        check_selected(cfgs_for("ranker.heldout_fraction=0.9999"), cands, {"dev": "split"})
    with pytest.raises(ConfigError, match="first-stage candidates"):
        check_selected(cfgs_for(), [clist("q1", 2)], {"dev": "split"})


@pytest.mark.parametrize("content, message", [
    ("", "holds no questions"),
    ("\n  \n", "holds no questions"),
    ('{"qid": "1"}\n', "has a 'query'"),
    ('{"query": \n', "does not parse"),
    (b"caf\xe9?\n", "not UTF-8"),
])
def test_bad_query_logs_are_errors(tmp_path, content, message):
    p = tmp_path / "log.txt"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(QuestionsError, match=message):
        read_query_file(p)
    with pytest.raises(QuestionsError, match="is a folder"):
        read_query_file(tmp_path)
    with pytest.raises(QuestionsError, match="not found"):
        read_query_file(tmp_path / "missing.txt")


def test_new_selection_on_an_existing_labels_dir_is_refused(tmp_path, monkeypatch):
    """A new queries.n or query log on a labels dir must not silently reuse the old queries."""
    from retriever_training import label

    corpus = Corpus("toy", [Passage(f"p{i}", f"passage {i}") for i in range(4)])
    monkeypatch.setattr(label, "make_candidates", lambda corpus, queries, cfg, progress: [
        CandidateList(q.qid, q.query, "hybrid", []) for q in queries])
    log = write_log(tmp_path / "log.txt", 20)
    base = ["label.corpus=toy", f"label.labels_dir={tmp_path / 'labels'}", "queries.source=file",
            f"queries.file={log}", "queries.n=10"]
    out, cands = label.prepare_lists(load_sections(None, SECTIONS, base), False, corpus)
    assert len(cands) == 10 and (out / "selection.json").exists()
    again = label.prepare_lists(load_sections(None, SECTIONS, base), False, corpus)[1]
    assert [c.qid for c in again] == [c.qid for c in cands]  # same settings: reused
    with pytest.raises(ConfigError, match="queries.n=10"):
        label.prepare_lists(load_sections(None, SECTIONS, [*base, "queries.n=15"]), False, corpus)
    log.write_text("an entirely different question?\n")
    with pytest.raises(ConfigError, match="file_sha256"):
        label.prepare_lists(load_sections(None, SECTIONS, base), False, corpus)


def test_shipped_label_set_matches_the_shipped_config():
    """The committed label set predates selection.json: its provenance is what is compared."""
    from rag.corpus import load_corpus
    from retriever_training.label import check_selection
    from retriever_training.recipe import labels_path, selection
    from rag.settings import REPO_ROOT

    cfgs = load_sections(REPO_ROOT / "retriever_training" / "configs" / "squad_dev.yaml", SECTIONS)
    out = labels_path(cfgs["label"])
    corpus = load_corpus("squad_dev")
    check_selection(out, {**selection(cfgs), "corpus": corpus.name, "corpus_hash": corpus.hash})
    assert not (out / "selection.json").exists()  # the committed directory is left as it is
    changed = load_sections(REPO_ROOT / "retriever_training" / "configs" / "squad_dev.yaml", SECTIONS,
                            ["queries.n=500"])
    with pytest.raises(ConfigError, match="queries.n=1000"):
        check_selection(out, {**selection(changed), "corpus": corpus.name, "corpus_hash": corpus.hash})


def test_select_queries_from_an_empty_split_pool_is_an_error(monkeypatch):
    monkeypatch.setattr("rag.corpus.load_queries", lambda corpus, split=None: [])
    with pytest.raises(QueriesError, match="No queries to label"):
        select_queries(QueriesConfig(source="split"), "toy")


def test_retrain_on_a_corpus_without_dev_fails_before_labelling(tmp_path, monkeypatch):
    from retriever_training import label
    from retriever_training.retrain import queries_line, retrain

    corpus = tmp_path / "news.jsonl"
    corpus.write_text("".join(f'{{"_id": "d{i}", "text": "paragraph {i}"}}\n' for i in range(10)))
    monkeypatch.setenv("DISTILRAG_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(label, "prepare_lists", lambda *a, **k: pytest.fail("went on to select and label"))
    cfgs = load_sections(None, SECTIONS, [f"label.corpus={corpus}", "queries.source=file",
                                          f"queries.file={write_log(tmp_path / 'log.txt')}",
                                          "ranker.heldout_fraction=0"])
    with pytest.raises(ConfigError, match="no dev split"):
        retrain(cfgs, progress=False)
    line = queries_line({"labelled": 900, "heldout": 90, "unlabelled_from_log": 700, "unlabelled_synthetic": 0,
                         "dev": "heldout"})
    assert "900 labelled" in line and "90 held out" in line and "700 further from the log" in line
