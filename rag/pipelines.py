"""Retrieval pipelines by spec: a first-stage retriever, then optionally a trained cross-encoder.

    <first stage>[+<reranker>]
    first stage: base | distilled | bm25 | hybrid[:<embedder>][@<dense weight>] | <model dir>  (rag.retrievers)
    reranker:    ranker (the one published for the corpus) | <cross-encoder dir>
    run:<TREC run file>   a ranking made earlier, replayed by question id (evaluation only)
e.g. "hybrid:distilled+ranker". The one place a spec becomes models: the chain (CLI and app),
the evaluation harness and the trainer's verdict all build their retrieval here, so they
retrieve and rerank the same way and resolve "distilled"/"ranker" for the corpus they serve.

Why run files: an answer depends only on the passages the LLM reads, not on the model that
picked them. A run file of a model's rankings lets the harness answer for that model on any
machine and in any later session (another retrieval system's rankings too), without its weights.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

RERANK_DEPTH = 20  # first-stage candidates a reranker reorders (the trainer's candidate depth)
RUN_PREFIX = "run:"


def run_file(spec: str) -> Path | None:
    """The TREC run file a "run:<file>" spec replays; None for any other spec."""
    return Path(spec[len(RUN_PREFIX):]).expanduser() if spec.startswith(RUN_PREFIX) else None


def split_spec(spec: str) -> tuple[str, str | None]:
    retriever, _, reranker = spec.partition("+")
    return retriever, (reranker or None)


def slug(spec: str) -> str:
    """A directory name for a spec (a model dir becomes rag.embedder.path_label of it;
    "hybrid:<model dir>" keeps its prefix, so it never shares the dense model's directory)."""
    from rag.embedder import path_label

    if (path := run_file(spec)) is not None:
        name = path.name
        for ext in (".gz", ".trec", ".txt", ".run"):
            name = name.removesuffix(ext)
        return f"run-{name}"

    def part(p: str) -> str:
        body, at, weight = p.rpartition("@") if p.startswith("hybrid") and "@" in p else (p, "", "")
        kind, sep, model = body.partition(":") if body.startswith("hybrid:") else ("", "", body)
        return kind + sep + (path_label(model) if ("/" in model or "\\" in model) else model) + at + weight

    return "+".join(part(p) for p in spec.split("+")).replace(":", "-")


def reranker_path(reranker: str, corpus=None) -> Path | None:
    """The cross-encoder a spec's "+<reranker>" names: "ranker" is the one published for `corpus`
    (None if none)."""
    from rag.embedder import published_path

    path = published_path("ranker", corpus) if reranker == "ranker" else reranker
    return Path(path) if path is not None else None


def spec_identity(spec: str, corpus=None) -> dict:
    """The weights every model of a spec resolves to now. "distilled", "+ranker" and a run's
    student/ mean other models after a retrain: results kept under the same name must not be
    resumed as theirs. An unpublished ranker is None and an unresolvable embedder marks the spec
    unresolved: building the pipeline then says why."""
    from rag.embedder import EmbedderNotFound, resolve_embedder, weights_hash
    from rag.retrievers import spec_embedder

    if (path := run_file(spec)) is not None:
        import hashlib

        return {"run": hashlib.sha256(path.read_bytes()).hexdigest()} if path.is_file() else {"unresolved": True}
    name, reranker = split_spec(spec)
    ident: dict = {}
    try:
        if (emb := spec_embedder(name)) is not None:
            ident["embedder"] = resolve_embedder(emb, corpus).weights_hash
        if reranker:
            path = reranker_path(reranker, corpus)
            ident["reranker"] = weights_hash(path) if path is not None else None
    except EmbedderNotFound:
        ident["unresolved"] = True
    return ident


def published_card(corpus):
    """The rag.records.ModelCard of the distilled model published for `corpus`; None if none
    (a model directory without a readable card has a card with its name only)."""
    from rag.embedder import published_path
    from rag.records import ModelCard

    path = published_path("distilled", corpus)
    if path is None or not path.is_dir():
        return None
    return ModelCard.read(path) or ModelCard(name=path.name, corpus="")


def published_name(spec: str) -> str:
    """A run's pipeline spec (runs/<run>/student, runs/<run>/ranker) in the names that mean its
    models once published: "distilled", "ranker"."""
    import re

    return re.sub(r"[^+:]*/ranker\b", "ranker", re.sub(r"[^+:]*/(student|model)\b", "distilled", spec))


def published_verdict(corpus) -> dict:
    """The verdict that serves `corpus`: the published distilled model's (its card), else that of a
    retrain whose student was refused (the pipelines that need no student; retriever_training.publish),
    else {}."""
    import json

    from rag.embedder import published_path

    card = published_card(corpus)
    if card is not None:
        return card.verdict
    path = published_path("pipelines", corpus)
    try:
        verdict = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return verdict if isinstance(verdict, dict) else {}


def pipeline_rows(corpus) -> tuple[dict[str, dict], dict]:
    """{published spec: its row (ndcg@10, ms_per_query, ...)} from the corpus's published verdict,
    and the verdict."""
    verdict = published_verdict(corpus)
    return ({published_name(r["spec"]): r for r in verdict.get("pipelines") or []
             if isinstance(r, dict) and isinstance(r.get("spec"), str)}, verdict)


def number_field(rows: dict[str, dict], field: str) -> dict[str, float]:
    """{spec: row[field]} for the rows where that field is a number."""
    return {s: r[field] for s, r in rows.items() if isinstance(r.get(field), (int, float))}


def pipeline_scores(corpus) -> tuple[dict[str, float], dict]:
    """{published spec: held-out nDCG@10} from the corpus's published verdict, and the verdict."""
    rows, verdict = pipeline_rows(corpus)
    return number_field(rows, "ndcg@10"), verdict


def best_spec(corpus, fallback: str = "base") -> str:
    """The pipeline the corpus's published verdict chose to serve ("hybrid:distilled+ranker", ...:
    its best, ties going to one without a reranker), else `fallback`: what the chat, `ask` and
    `eval` use when no retriever is named."""
    best = published_verdict(corpus).get("best_published") or ""
    return published_name(best) if isinstance(best, str) and best else fallback


@dataclass
class Pipeline:
    """question -> nodes: the first stage's top candidates, reranked to `top_k` when a reranker is set."""
    spec: str
    first_stage: object
    reranker: object | None = None

    def retrieve(self, question):
        from llama_index.core.schema import QueryBundle

        bundle = question if isinstance(question, QueryBundle) else QueryBundle(question)
        nodes = self.first_stage.retrieve(bundle)
        return self.reranker.postprocess_nodes(nodes, query_bundle=bundle) if self.reranker else nodes


def build_pipeline(spec: str, corpus, top_k: int = 5, rerank_depth: int = RERANK_DEPTH,
                   rebuild_stale: bool = False) -> Pipeline:
    """The pipeline a spec names over `corpus`. `rebuild_stale` rebuilds an index of the weights
    a name meant before a retrain (the harness's choice; the app asks the user instead)."""
    from rag.corpus import load_corpus
    from rag.embedder import EmbedderNotFound
    from rag.index import IndexMismatchError, get_index
    from rag.retrievers import make_retriever, spec_embedder

    if isinstance(corpus, str):
        corpus = load_corpus(corpus)
    if run_file(spec) is not None:
        from rag.errors import UserError

        raise UserError(f"{spec!r} replays rankings by question id, so only `distilrag eval` can use it "
                        "(--retrievers run:FILE); name a retriever here (base, distilled, bm25, hybrid, ...).")
    name, reranker = split_spec(spec)
    depth = max(rerank_depth, top_k) if reranker else top_k
    try:
        first = make_retriever(name, corpus, top_k=depth)
    except IndexMismatchError as e:
        if not rebuild_stale:
            raise
        print(f"{str(e).partition(' Rebuild it')[0]} Rebuilding it.", file=sys.stderr)
        get_index(corpus, spec_embedder(name), rebuild=True)
        first = make_retriever(name, corpus, top_k=depth)
    rr = None
    if reranker:
        from rag.rerank import CrossEncoderRerank

        path = reranker_path(reranker, corpus)
        if path is None or not path.exists():
            raise EmbedderNotFound(f"No trained ranker is published for {corpus.key} yet: `distilrag retrain` "
                                   "publishes one with the distilled retriever, or name a cross-encoder "
                                   "directory after '+'.")
        rr = CrossEncoderRerank(model=str(path), top_n=top_k)
    return Pipeline(spec, first, rr)


def retrieval_function(spec: str, corpus, depth: int) -> Callable[..., list]:
    """(question, qid=None) -> the top `depth` nodes (the harness keeps whole ranked lists for its
    run files). Only a "run:" spec reads the qid."""
    if (path := run_file(spec)) is not None:
        return run_replay(path, corpus, depth)
    pipeline = build_pipeline(spec, corpus, top_k=depth, rerank_depth=depth, rebuild_stale=True)
    return lambda question, qid=None: pipeline.retrieve(question)


def run_replay(path: Path, corpus, depth: int) -> Callable[..., list]:
    """A TREC run file as a retrieval function: (question, qid) -> that question's ranked passages.
    Checked against the corpus when read, so a run over another corpus fails before any answer."""
    from llama_index.core.schema import NodeWithScore

    from rag.corpus import passage_node
    from rag.errors import UserError
    from rag.metrics import ranked, read_run

    if not path.is_file():
        raise UserError(f"Run file {path} does not exist: give a TREC run file (qid Q0 docid rank score tag), "
                        "e.g. a <retriever>/run.trec that `distilrag eval` wrote.")
    try:
        run = read_run(path)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a TREC run file ({e}).") from None
    stray = sorted({d for docs in run.values() for d in docs} - corpus.by_id.keys())
    if stray:
        raise UserError(f"{path} ranks {len(stray)} passages that corpus {corpus.key} does not have (e.g. "
                        f"{stray[0]!r}): the run was made over another corpus or another chunking.")
    orders = {qid: ranked(docs)[:depth] for qid, docs in run.items()}

    def retrieve(question, qid=None) -> list:
        if qid not in orders:
            raise UserError(f"{path} has no ranking for question {qid!r} ({question!r}): give a run of "
                            "the questions this evaluation asks (the same corpus, split, --n and --seed).")
        return [NodeWithScore(node=passage_node(corpus.by_id[d]), score=s) for d, s in orders[qid]]

    retrieve.qids = frozenset(orders)  # the harness checks its questions against them before answering
    return retrieve
