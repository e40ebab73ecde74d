"""The trained cross-encoder as a LlamaIndex node postprocessor (the chain's, the harness's and the
app's reranker).

It feeds the cross-encoder what the ranker was trained on: `passage_text` (title, newline, text) at
the model's own max_length. LlamaIndex's SentenceTransformerRerank would give it the node's
embed-mode text ("title: ...", blank line) at 512 tokens, in fp32. Scores are the raw logits, and
the pairs run under bf16 autocast where the CPU or GPU does bf16 natively, as in teacher scoring.
Measured on 500 test questions (top 20, 2 cores): 0.45 s per question instead of 1.2 s, nDCG@10
.855 both ways for one ranker and .848 vs .840 for another.
"""
from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle

from rag.corpus import join_title
from rag.settings import use_bf16


def cross_encoder_scores(model, pairs: list[tuple[str, str]], batch_size: int = 16,
                         bf16: bool = False) -> list[float]:
    """Raw logits of a CrossEncoder for (query, passage) pairs: the one scoring path of teacher
    scoring and reranking. Not the default sigmoid: squashed into (0, 1) the scores would give the
    student an almost uniform softmax target (measured: the student then forgot how to rank).
    predict sorts the pairs by length, so batches carry little padding."""
    import torch

    if not pairs:
        return []
    with torch.inference_mode(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False,
                               activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    return [float(s) for s in scores]


class CrossEncoderRerank(BaseNodePostprocessor):
    """Score (query, passage) pairs with a sentence-transformers CrossEncoder; keep the top_n."""

    model: str
    top_n: int = 5
    batch_size: int = 16     # predict sorts the pairs by length: 16 per forward pads little
    precision: str = "auto"
    _model: Any = PrivateAttr()
    _bf16: bool = PrivateAttr()

    def __init__(self, model: str, top_n: int = 5, batch_size: int = 16, precision: str = "auto",
                 device: str | None = None, cross_encoder=None):
        """`model`: a CrossEncoder directory; `cross_encoder`: one already loaded (then `model`
        only names it)."""
        super().__init__(model=model, top_n=top_n, batch_size=batch_size, precision=precision)
        if cross_encoder is None:
            from sentence_transformers import CrossEncoder

            cross_encoder = CrossEncoder(model, device=device or "cpu")
        self._model = cross_encoder
        self._bf16 = use_bf16(precision)

    @classmethod
    def class_name(cls) -> str:
        return "CrossEncoderRerank"

    def score(self, query: str, texts: list[str]) -> list[float]:
        return cross_encoder_scores(self._model, [(query, t) for t in texts], self.batch_size, self._bf16)

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("The reranker needs the query: pass a QueryBundle.")
        texts = [join_title(n.node.metadata.get("title", ""), n.node.get_content()) for n in nodes]
        for node, s in zip(nodes, self.score(query_bundle.query_str, texts)):
            node.score = s
        return sorted(nodes, key=lambda n: -n.score)[: self.top_n]
