from rag.corpus import Corpus
from rag.records import Passage
from retriever_training.queries import QueriesConfig, dedupe, read_query_file, select_queries
from retriever_training.synthesize import clean_question, synthesize_queries
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
