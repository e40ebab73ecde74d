"""The chain numbers passages, streams the answer and maps [n] citations to docids."""
from rag.chain import NO_ANSWER, RAGChain, is_no_answer, parse_citations
from tests.fakes import scripted_llm


class ListRetriever:
    """Returns fixed nodes: the chain must not care which retriever it has."""

    def __init__(self, passages):
        from llama_index.core.schema import NodeWithScore, TextNode

        self.nodes = [NodeWithScore(node=TextNode(id_=d, text=t, metadata={"title": "T", "docid": d}), score=s)
                      for d, t, s in passages]

    def retrieve(self, bundle):
        return list(self.nodes)


def test_parse_citations_orders_dedupes_and_drops_out_of_range():
    assert parse_citations("A [2] and B [1, 3]; again [2] and [9]", 3) == [2, 1, 3]
    assert parse_citations("as Source 2 says", 3) == [2]
    assert parse_citations("no citation", 3) == []


def test_chain_maps_citation_to_docid_and_streams():
    llm = scripted_llm(["The Denver Broncos represented the AFC [2]."])
    chain = RAGChain(ListRetriever([("d1", "Panthers text", 0.9), ("d2", "Broncos text", 0.8)]), llm, name="fake")
    tokens = []
    ans = chain.answer("Which team represented the AFC?", on_token=tokens.append)
    assert "".join(tokens).strip() == ans.text
    assert len(tokens) > 1  # streamed, not one blob
    assert ans.cited == [2] and ans.cited_docids == ["d2"]
    assert ans.retrieved_docids == ["d1", "d2"]
    prompt = llm.prompts[0]
    assert "[1] (T) Panthers text\n\n[2] (T) Broncos text" in prompt  # plain text, one passage per block
    assert "['" not in prompt and len(llm.prompts) == 1
    assert "Which team represented the AFC?" in prompt


def test_a_consumer_that_stops_early_closes_the_llm_stream():
    """The chat's Stop button raises out of on_token: the stream (and its HTTP request) must be
    closed then, not when the exception and its frames are garbage collected."""
    import pytest

    llm = scripted_llm(["one two three four five six seven eight"])
    chain = RAGChain(ListRetriever([("d1", "x", 1.0)]), llm, name="fake")
    seen = []

    class Stop(BaseException):  # like Streamlit's rerun exception: not an Exception
        pass

    def on_token(tok):
        seen.append(tok)
        if len(seen) == 2:
            raise Stop

    try:
        chain.answer("q?", on_token=on_token)
        pytest.fail("the consumer's exception must propagate")
    except Stop:  # the exception (and the frames it holds) is still alive here
        assert len(seen) == 2 and llm.streams_closed == 1


def test_chain_no_answer_detection():
    chain = RAGChain(ListRetriever([("d1", "x", 1.0)]), scripted_llm([NO_ANSWER]))
    ans = chain.answer("What is the capital of Mongolia?")
    assert ans.is_no_answer and ans.cited == []
    assert not is_no_answer("Denver Broncos [1]")
