from rag.corpus import Corpus
from rag.records import Passage, Query, read_jsonl
from rag.questions import read_questions as read_query_file
from retriever_training.queries import QueriesConfig, dedupe, select_queries, synthetic_queries
from retriever_training.synthesize import clean_question, clean_questions, synthesize_queries
from tests.fakes import FakeChatClient


def test_clean_question():
    p = "Warsaw is the capital of Poland. It lies on the Vistula."
    assert clean_question("Question: What river does Warsaw lie on\nmore", p) == "What river does Warsaw lie on?"
    assert clean_question("Warsaw is the capital of Poland", p) is None  # copied
    assert clean_question("Why?", p) is None and clean_question("", p) is None


def test_synthesis_filters_questions_the_retriever_cannot_trace(tmp_path):
    corpus = Corpus("toy", [Passage("a", "Warsaw is the capital of Poland and lies on the Vistula river."),
                            Passage("b", "Oxygen has atomic number eight and is a reactive nonmetal."),
                            Passage("c", "The Rhine flows from the Alps to the North Sea.")])

    def respond(messages):
        text = messages[-1]["content"].rsplit("Passage:", 1)[1]
        if "Warsaw" in text:
            return "Which river does the Polish capital lie on?"
        if "Oxygen" in text:
            return "What is the capital of France?"  # vague/unrelated: the retriever will not find b
        return "Where does the Rhine flow from and to?"

    cfg = QueriesConfig(source="synthesize", n=3, seed=0, synth_filter_depth=1)
    client = FakeChatClient(respond)
    qs = synthesize_queries("toy", cfg, client=client, corpus=corpus, progress=False)
    texts = sorted(q.query for q in qs)
    assert "What is the capital of France?" not in texts
    assert texts == ["Where does the Rhine flow from and to?", "Which river does the Polish capital lie on?"]
    again = FakeChatClient(respond)
    synthesize_queries("toy", cfg, client=again, corpus=corpus, progress=False)
    assert again.requests == []  # cached


def test_query_file_text_and_jsonl_and_dedupe(tmp_path):
    f = tmp_path / "log.txt"
    f.write_text("What is X?\n\nwhat  is x?\nWho is Y?\n")
    qs = dedupe(read_query_file(f))
    assert [q.query for q in qs] == ["What is X?", "Who is Y?"]
    j = tmp_path / "log.jsonl"
    j.write_text('{"question": "Where is Z?", "qid": "z1"}\n{"query": "When?"}\n')
    qs = read_query_file(j)
    assert qs[0].qid == "z1" and qs[1].query == "When?"
    picked = select_queries(QueriesConfig(source="file", file=str(f), n=1, seed=0), "toy")
    assert len(picked) == 1


def test_clean_questions_one_per_line():
    p = "Warsaw is the capital of Poland. It lies on the Vistula. Its mayor is elected."
    reply = ("1. Which river does Warsaw lie on?\n- which river does warsaw lie on\n\n"
             "2) Warsaw is the capital of Poland\n* How is the mayor of Warsaw chosen?\n"
             "Of which country is Warsaw the capital?")
    qs, bad = clean_questions(reply, p, 2)
    assert qs == ["Which river does Warsaw lie on?", "How is the mayor of Warsaw chosen?"]
    assert bad == 2  # the copied sentence and the third question beyond k


def test_synthetic_queries_written_once_and_remade_when_settings_change(tmp_path, monkeypatch):
    """Several questions per call; the file and its settings are reused (no LLM call), a larger
    count keeps the smaller one's passages, so the calls already paid for are cache hits."""

    corpus = Corpus("toy6", [Passage(f"p{i}", f"Topic{i} was founded in year {1900 + i} by person{i}.")
                            for i in range(6)])
    monkeypatch.setattr("retriever_training.synthesize.load_corpus", lambda name: corpus)

    def respond(messages):
        n = messages[-1]["content"].split("Topic", 1)[1].split()[0]
        return f"When was Topic{n} founded?\nWho founded Topic{n}?"

    first = FakeChatClient(respond)
    monkeypatch.setattr("rag.llm.openai_client", lambda cfg=None: first)
    cfg = QueriesConfig(synthetic=4, synth_per_passage=2, synth_filter_depth=6)
    qs = synthetic_queries(cfg, "toy6", tmp_path)
    assert len(qs) == 4 and len(first.requests) == 2 and all(q.split == "synthetic" for q in qs)
    assert sorted(q.query for q in read_jsonl(tmp_path / "synthetic_queries.jsonl", Query)) == sorted(q.query for q in qs)
    # Same settings: read back, no call.
    synthetic_queries(cfg, "toy6", tmp_path)
    assert len(first.requests) == 2
    # More queries: two more passages are asked for; the first two come from the cache.
    more = synthetic_queries(QueriesConfig(synthetic=8, synth_per_passage=2, synth_filter_depth=6), "toy6", tmp_path)
    assert len(more) == 8 and len(first.requests) == 4
    assert {q.qid for q in qs} <= {q.qid for q in more}


def test_a_short_log_is_topped_up_with_llm_written_queries(tmp_path, monkeypatch):
    import retriever_training.queries as Q
    from rag.config import load_sections
    from retriever_training.retrain import SECTIONS, unlabelled_queries

    log = tmp_path / "log.txt"
    log.write_text("".join(f"question number {i}?\n" for i in range(10)))
    asked = []

    def fake_synthetic(cfg, corpus_name, out_dir, progress=True):
        asked.append(cfg.synthetic)
        return [Query(f"syn-{i}", f"written {i}?", split="synthetic") for i in range(cfg.synthetic)]
    monkeypatch.setattr(Q, "synthetic_queries", fake_synthetic)

    def run(*extra):
        cfgs = load_sections(None, SECTIONS, ["label.corpus=squad_dev", "queries.source=file",
                                              f"queries.file={log}", "queries.n=4", *extra])
        labelled = {q.qid for q in read_query_file(log)[:4]}
        return unlabelled_queries(cfgs, labelled, tmp_path, progress=False)

    pool, synth = run("queries.top_up_to=30")
    assert len(pool) == 6 and len(synth) == 20 and asked[-1] == 20  # 4 labelled + 6 from the log + 20 = 30
    pool, synth = run("queries.top_up_to=8")  # the log is long enough: nothing written
    assert len(pool) == 6 and synth == [] and asked[-1] == 0
    pool, synth = run("queries.synthetic=3")  # a fixed number, no top-up
    assert len(synth) == 3


def test_dropped_questions_are_replaced_from_further_passages_and_reported(capsys):
    """A small model copies the prompt's example for passages it cannot read (markup, code): those
    are dropped, and the writer goes on through the same seeded order until `want` survive."""
    from rag.prompts import SYNTH_QUESTION

    example = SYNTH_QUESTION.examples[0][1][0]
    corpus = Corpus("toy8", [Passage(f"p{i}", f"Topic{i} was founded in year {1900 + i} by person{i}.")
                             for i in range(4)] +
                    [Passage(f"m{i}", f'<link rel="stylesheet" href="css/chrome-{i}.css">') for i in range(4)])

    def respond(messages):
        text = messages[-1]["content"].rsplit("Passage:", 1)[1]
        n = text.split("Topic", 1)[1].split()[0] if "Topic" in text else None
        return f"When was Topic{n} founded?" if n else example

    cfg = QueriesConfig(source="synthesize", n=4, seed=0, synth_filter_depth=8)
    client = FakeChatClient(respond)
    qs = synthesize_queries("toy8", cfg, client=client, corpus=corpus, want=4)
    assert sorted(q.query for q in qs) == [f"When was Topic{i} founded?" for i in range(4)]
    assert example.rstrip("?") not in " ".join(q.query for q in qs)
    out = capsys.readouterr().out
    assert f"questions written in {len(client.requests)} LLM calls: 4 kept" in out and len(client.requests) > 4
    assert f"{len(client.requests) - 4} unusable" in out
    # without `want` the planned passages only: fewer questions, nothing written beyond them
    fewer = synthesize_queries("toy8", cfg, client=FakeChatClient(respond), corpus=corpus, progress=False)
    assert len(fewer) < 4


def test_a_question_two_passages_yield_is_one_query_and_kept_counts_distinct(capsys):
    """Two chapters about one topic can yield the same question: it is kept once, and `want`
    counts distinct questions (the writer goes on to further passages for the rest)."""
    from retriever_training.synthesize import sample_passages

    corpus = Corpus("toy6", [Passage(f"p{i}", f"Ownership chapter {i}: moves, borrows and topic{i} in detail.")
                             for i in range(6)])
    first_two = {p.docid for p in sample_passages(corpus, 6, 0)[:2]}  # the seeded order's first two

    def respond(messages):
        text = messages[-1]["content"].rsplit("Passage:", 1)[1]
        n = text.split("topic", 1)[1].split()[0]
        return "What does ownership move?" if f"p{n}" in first_two else f"What is topic{n} about?"

    cfg = QueriesConfig(source="synthesize", n=3, seed=0, synth_filter_depth=6)
    client = FakeChatClient(respond)
    qs = synthesize_queries("toy6", cfg, client=client, corpus=corpus, want=3)
    texts = [q.query for q in qs]
    assert len(texts) == len(set(texts)) == 3 and texts.count("What does ownership move?") == 1
    out = capsys.readouterr().out
    assert len(client.requests) == 4 and "questions written in 4 LLM calls: 3 kept" in out and "1 asked already" in out


def test_a_corpus_with_too_few_passages_gets_more_questions_from_each(capsys):
    """Asked for more questions than one a passage can give, the writer asks each passage again for
    several; the calls stay within WRITE_MORE x the planned ones."""
    from retriever_training.label_cost import WRITE_MORE

    corpus = Corpus("toy3", [Passage(f"p{i}", f"Topic{i} was founded in {1900 + i} by person{i} in city{i}.")
                             for i in range(3)])

    def respond(messages):
        n = messages[-1]["content"].rsplit("Passage:", 1)[1].split("Topic", 1)[1].split()[0]
        if messages[0]["content"].startswith("You write one"):
            return f"When was Topic{n} founded?"
        return f"Who founded Topic{n}?\nIn which city was Topic{n} founded?\nWhen was Topic{n} founded?"

    cfg = QueriesConfig(source="synthesize", n=6, seed=0, synth_filter_depth=3)
    client = FakeChatClient(respond)
    qs = synthesize_queries("toy3", cfg, client=client, corpus=corpus, want=6)
    texts = sorted(q.query for q in qs)
    assert len(texts) == len(set(texts)) == 6 and len(client.requests) <= WRITE_MORE * 6
    assert "Who founded Topic0?" in texts and "When was Topic0 founded?" in texts
    assert "3 asked already" in capsys.readouterr().out  # the second ask repeats the first question
    # without `want`: one question a passage, as planned
    assert len(synthesize_queries("toy3", cfg, client=FakeChatClient(respond), corpus=corpus, progress=False)) == 3
