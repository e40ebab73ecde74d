"""The RAG chain: retrieve top-k passages, answer from them only, cite them as [n], stream tokens.

Built from LlamaIndex parts: a retrieval pipeline from rag.pipelines (first stage, optional
trained cross-encoder) and a streaming response synthesiser over passages numbered [1..k] (one
number per passage, so a citation maps to exactly one docid). Used by the CLI, the Streamlit app
and the evaluation harness, so all three answer the same way. No Streamlit import here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from rag.citations import parse_citations  # noqa: F401  (re-exported: callers read it here)
from rag.corpus import Corpus, load_corpus
from rag.errors import UserError
from rag.llm import LLMConfig
from rag.prompts import NO_ANSWER, QA, QA_REFINE, is_no_answer

# The QA and refine prompts (their id and version are part of every answer's cache key,
# eval/answer_cache.py) live with every other prompt in rag/prompts.py.


@dataclass(frozen=True)
class Source:
    n: int          # the number the answer cites it by
    docid: str
    title: str
    text: str
    score: float


@dataclass
class Answer:
    question: str
    text: str
    sources: list[Source]
    cited: list[int] = field(default_factory=list)   # source numbers cited in the text, in order
    retriever: str = ""
    timings: dict = field(default_factory=dict)      # retrieve_s, first_token_s, total_s, tokens
    model_text: str = ""  # what the LLM wrote, when the chain re-pointed or withheld it (rag.grounding); else ""

    @property
    def withheld(self) -> bool:
        """The LLM answered, but its passages hold too little of it: the text says no answer."""
        return bool(self.model_text) and is_no_answer(self.text) and not is_no_answer(self.model_text)

    @property
    def citation_repaired(self) -> bool:
        return bool(self.model_text) and self.model_text != self.text and not self.withheld

    @property
    def cited_docids(self) -> list[str]:
        by_n = {s.n: s.docid for s in self.sources}
        return [by_n[n] for n in self.cited if n in by_n]

    @property
    def retrieved_docids(self) -> list[str]:
        return [s.docid for s in self.sources]

    @property
    def is_no_answer(self) -> bool:
        return is_no_answer(self.text)


class EmptyAnswer(UserError, RuntimeError):
    """The endpoint answered with nothing a chat completion stream is made of."""


def make_answer(question: str, model_text: str, sources: list[Source], retriever: str = "",
                timings: dict | None = None) -> Answer:
    """The one way an LLM's text becomes an Answer (the chain, and the harness's cached answers):
    its citation re-pointed where the cited passage lacks its words and another holds them, or
    withheld when no passage holds most of them (rag.grounding.shown_answer)."""
    from rag.grounding import shown_answer

    text = shown_answer(model_text, [s.text for s in sources], question)
    return Answer(question, text, sources, parse_citations(text, len(sources)), retriever, dict(timings or {}),
                  model_text=model_text if text != model_text else "")


def sources_of(nodes) -> list[Source]:
    """Retrieved nodes as the numbered sources an answer cites ([1] is the first node)."""
    return [Source(n=i, docid=nw.node.node_id, title=nw.node.metadata.get("title", ""),
                   text=nw.node.get_content(), score=float(nw.score or 0.0))
            for i, nw in enumerate(nodes, 1)]


class RAGChain:
    """Question in, cited answer out. `answer(..., on_token=cb)` streams tokens to `cb`."""

    def __init__(self, retriever, llm=None, name: str = "", reranker=None, llm_cfg: LLMConfig | None = None):
        self.retriever = retriever
        self.reranker = reranker
        self.name = name
        # The LLM is needed only to answer: retrieval (and the sources a UI shows first) works
        # before it has started, and while it is down. None = the configured endpoint, on demand.
        self.llm, self.llm_cfg = llm, llm_cfg
        self._synths: dict[int, object] = {}

    def synthesizer(self, llm=None):
        from llama_index.core import PromptTemplate, get_response_synthesizer
        from llama_index.core.response_synthesizers import ResponseMode

        if llm is None:
            if self.llm is None:
                from rag.llm import llama_index_llm

                self.llm = llama_index_llm(self.llm_cfg)
            llm = self.llm
        if id(llm) not in self._synths:
            # COMPACT, not SIMPLE_SUMMARIZE: the latter hands the prompt a Python list repr of the
            # passages (llama-index-core 0.14). COMPACT packs them into one text and only refines
            # when they overflow the context window.
            self._synths = {id(llm): get_response_synthesizer(
                llm=llm, text_qa_template=PromptTemplate(QA.template),
                refine_template=PromptTemplate(QA_REFINE.template),
                response_mode=ResponseMode.COMPACT, streaming=True)}
        return self._synths[id(llm)]

    def retrieve(self, question: str):
        from llama_index.core.schema import QueryBundle

        bundle = QueryBundle(question)
        nodes = self.retriever.retrieve(bundle)
        if self.reranker is not None:  # a bare retriever given a reranker (pipelines rerank themselves)
            nodes = self.reranker.postprocess_nodes(nodes, query_bundle=bundle)
        return nodes

    def answer(self, question: str, nodes=None, on_token: Callable[[str], None] | None = None,
               llm=None) -> Answer:
        """Answer from `nodes` (retrieved now when None) with `llm` (the chain's own when None)."""
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        question = question.strip()
        if not question:
            raise ValueError("Ask a question: the text is empty.")
        t0 = time.perf_counter()
        if nodes is None:
            nodes = self.retrieve(question)
        t_ret = time.perf_counter() - t0
        sources = sources_of(nodes)
        if not nodes:
            return Answer(question, NO_ANSWER, [], [], self.name, {"retrieve_s": t_ret, "total_s": t_ret})
        # One numbered source per passage, so [n] maps to exactly one docid.
        numbered = [NodeWithScore(node=TextNode(text=f"[{s.n}] ({s.title}) {s.text}" if s.title else f"[{s.n}] {s.text}"),
                                  score=s.score) for s in sources]
        resp = self.synthesizer(llm).synthesize(QueryBundle(question), numbered)
        pieces: list[str] = []
        t_first = None
        stream = resp.response_gen
        try:
            for tok in stream:
                if t_first is None:
                    t_first = time.perf_counter() - t0
                pieces.append(tok)
                if on_token:
                    on_token(tok)
        finally:
            # A consumer that stops early (the chat's Stop button raises out of on_token) closes
            # the generator chain and the HTTP stream under it, and the LLM server stops generating
            # (after a whole answer both are closed already).
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            from rag.llm import close_open_responses

            close_open_responses()
        text = "".join(pieces).strip()
        if not pieces:  # not even an empty token: an HTML error page, a cut stream, a proxy's timeout
            from rag.errors import public_endpoint

            where = getattr(llm or self.llm, "api_base", "") or "The LLM endpoint"
            raise EmptyAnswer(f"{public_endpoint(where) if '://' in where else where} sent no answer (an empty, "
                              "cut or non-JSON response). Check that its URL is an OpenAI-compatible /v1 and "
                              "that the server is healthy.")
        total = time.perf_counter() - t0
        return make_answer(question, text, sources, self.name,
                           {"retrieve_s": round(t_ret, 4), "first_token_s": round(t_first or total, 3),
                            "total_s": round(total, 3), "chunks": len(pieces)})

    def ask(self, question: str, on_token: Callable[[str], None] | None = None) -> Answer:
        return self.answer(question, on_token=on_token)


def build_chain(corpus: Corpus | str = "squad_dev", retriever: str = "base", top_k: int = 5,
                reranker: str | None = None, llm_cfg: LLMConfig | None = None, llm=None) -> RAGChain:
    """A chain over `corpus` with the named pipeline (rag.pipelines: `retriever`, reranked by
    `reranker` when given) and the configured LLM (`llm`, or one for `llm_cfg` made on the first
    answer: building a chain starts no server)."""
    from rag.pipelines import build_pipeline
    from rag.settings import apply_offline_env

    apply_offline_env()
    if isinstance(corpus, str):
        corpus = load_corpus(corpus)
    spec = retriever + (f"+{reranker}" if reranker else "")
    return RAGChain(build_pipeline(spec, corpus, top_k=top_k), llm, name=spec, llm_cfg=llm_cfg)
