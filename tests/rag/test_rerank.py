"""The reranker scores what the ranker was trained on and orders by its raw scores."""
import pytest

from rag.corpus import passage_text
from rag.records import Passage
from rag.rerank import CrossEncoderRerank

PASSAGES = [Passage(docid="a", title="Super_Bowl_50", text="The Broncos won the game.", source="s"),
            Passage(docid="b", title="", text="Untitled text about Panthers.", source="s"),
            Passage(docid="c", title="Nikola_Tesla", text="Tesla was born in Smiljan.", source="s")]


def nodes():
    from llama_index.core.schema import NodeWithScore, TextNode

    # The index's node layout (rag.index): title in metadata, docid/source kept out of the embed text.
    return [NodeWithScore(node=TextNode(id_=p.docid, text=p.text,
                                        metadata={"docid": p.docid, "title": p.title, "source": p.source},
                                        excluded_embed_metadata_keys=["docid", "source"]), score=1.0)
            for p in PASSAGES]


class RecordingCrossEncoder:
    """Stands in for CrossEncoder.predict: a fixed (negative-capable) score per passage text."""

    def __init__(self, scores):
        import torch

        self.scores, self.pairs, self.device = scores, [], torch.device("cpu")

    def predict(self, pairs, activation_fn=None, **_):
        import numpy as np
        import torch

        self.pairs += pairs
        raw = torch.tensor([self.scores[t] for _, t in pairs])
        return np.asarray((activation_fn or torch.sigmoid)(raw))


def test_the_reranker_scores_passage_text_and_keeps_the_top_n_by_raw_score():
    from llama_index.core.schema import QueryBundle

    fake = RecordingCrossEncoder({passage_text(PASSAGES[0]): -2.0, passage_text(PASSAGES[1]): 3.5,
                                  passage_text(PASSAGES[2]): 0.5})
    rr = CrossEncoderRerank(model="fake", top_n=2, precision="fp32", cross_encoder=fake)
    out = rr.postprocess_nodes(nodes(), query_bundle=QueryBundle("who won?"))
    # The training text (title, newline, text), not LlamaIndex's "title: ..." embed-mode layout.
    assert fake.pairs == [("who won?", passage_text(p)) for p in PASSAGES]
    assert [n.node.id_ for n in out] == ["b", "c"]
    assert [n.score for n in out] == [3.5, 0.5]   # logits, not sigmoids
    with pytest.raises(ValueError, match="query"):
        rr.postprocess_nodes(nodes())


def test_the_reranker_scores_index_nodes_as_teacher_scoring_scores_the_corpus():
    """On a real MiniLM cross-encoder: reranking the index's nodes gives the teacher's scores for
    the same passages (both fp32: equal, so the two build the same text); bf16 stays close."""
    import torch
    from llama_index.core.schema import QueryBundle
    from sentence_transformers import CrossEncoder

    from rag.corpus import Corpus
    from rag.models import base_embedder_path
    from rag.records import Candidate, CandidateList
    from retriever_training.score_teacher import score_lists

    torch.manual_seed(0)  # the converted MiniLM gets a fresh scoring head
    model = CrossEncoder(str(base_embedder_path()), num_labels=1, max_length=256)
    query = "Where was Tesla born?"
    cl = CandidateList(qid="q", query=query, retriever="x",
                       candidates=[Candidate(p.docid, 0.0, i + 1) for i, p in enumerate(PASSAGES)])
    [teacher] = score_lists(model, [cl], Corpus("tiny", PASSAGES), set(), "ranker", depth=3, progress=False)
    by_doc = dict(zip(teacher.docids, teacher.scores))
    reranked = CrossEncoderRerank("minilm", top_n=3, precision="fp32", cross_encoder=model).postprocess_nodes(
        nodes(), query_bundle=QueryBundle(query))
    assert {n.node.id_: n.score for n in reranked} == pytest.approx(by_doc, abs=1e-5)
    assert [n.score for n in reranked] == sorted(by_doc.values(), reverse=True)
    bf16 = CrossEncoderRerank("minilm", precision="bf16", cross_encoder=model).score(
        query, [passage_text(p) for p in PASSAGES])
    assert bf16 == pytest.approx([by_doc[p.docid] for p in PASSAGES], abs=0.05)
