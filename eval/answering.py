"""One round of the harness answered question by question, every retriever of a question in a row.

    (called by eval/run.py's run_eval once per round; no command of its own)

In:  the round's questions and, per retriever spec, its retrieval function, its answers file and
     the question ids it still lacks.
Out: one rag.records.AnswerRecord line per answered question, appended to that spec's
     <retriever>/answers.jsonl.

Why question by question: reading the prompt is almost all of an answer's time on a CPU, and the
QA prompt starts with the sources. The retrievers of one question often share their first
passages, so their prompts, sent one after another with the shared ones adjacent, share a prefix
that the LLM server (llama.cpp) keeps in its KV cache and does not read again. Asked retriever by
retriever, consecutive prompts are different questions and share only the template's first words.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from eval.failures import EvalFailed, llm_failure
from eval.qa_metrics import answer_in_context, qa_scores
from rag.pipelines import slug
from rag.records import AnswerRecord, append_jsonl_many, from_dict, to_dict

MAX_FAILURES_IN_A_ROW = 5  # then the endpoint is down, not one question hard: stop, keep the rest


class SpecAnswerer:
    """One retriever spec's share of a round: retrieve a question, then (unless retrieval-only)
    answer it, serving a prompt answered before from `answers` (eval.answer_cache.AnswerCache)
    and checking abstention and grounding with `checker` (eval.answer_checks.Checker)."""

    def __init__(self, spec: str, retrieve, out: Path, todo: set, cfg, corpus, llm=None, llm_cfg=None,
                 answers=None, checker=None):
        from rag.chain import RAGChain

        self.spec, self.retrieve_fn, self.out, self.todo = spec, retrieve, out, todo
        self.cfg, self.corpus, self.answers, self.checker, self.llm_cfg = cfg, corpus, answers, checker, llm_cfg
        # The chain only answers here (nodes are passed in), so the harness can time retrieval and
        # keep the full --depth ranking for IR metrics while the LLM sees the top --top-k.
        self.chain = (RAGChain(retriever=None, llm=llm, name=spec, llm_cfg=llm_cfg)
                      if todo and not cfg.retrieval_only else None)
        self.buf: list = []
        self.in_a_row = 0

    def retrieve(self, q):
        t0 = time.perf_counter()
        nodes = self.retrieve_fn(q.query, q.qid)
        rec = AnswerRecord(qid=q.qid, question=q.query, references=list(q.answers), retriever=self.spec,
                           retrieved=[nw.node.node_id for nw in nodes],
                           scores=[round(float(nw.score or 0.0), 6) for nw in nodes],
                           contexts=[nw.node.get_content() for nw in nodes[:self.cfg.top_k]],
                           timings={"retrieve_s": round(time.perf_counter() - t0, 4)})
        return nodes, rec

    def answer(self, q, nodes, rec) -> None:
        if self.cfg.retrieval_only:
            # texts are in the corpus; keep fast runs' files small
            self.buf.append(replace(rec, contexts=[], answer=None, qa={"answer_in_context": answer_in_context(
                q.answers, [self.corpus.by_id[d].text for d in rec.retrieved[:self.cfg.top_k]])} if q.answers else {}))
            if len(self.buf) >= 200:
                self.flush()
            return
        top = nodes[:self.cfg.top_k]
        key = self.answers.key(q.query, top) if self.answers is not None else None
        hit = self.answers.get(key) if key else None
        try:
            if hit is not None:
                from eval.answer_cache import cached_answer

                ans = cached_answer(q.query, hit, top, self.spec)
                rec = replace(rec, cached=True)  # its latencies are the call that produced it, not this run's
            else:
                ans = self.chain.answer(q.query, nodes=top)
            if not ans.text.strip():  # only whitespace: nothing to score (no tokens at all: the chain raises)
                from rag.chain import EmptyAnswer

                raise EmptyAnswer("The LLM returned an empty answer (is the endpoint an OpenAI-compatible /v1 URL?).")
        except Exception as e:  # one failed question must not cost the others; it is redone on resume
            from rag.llm import LLMUnavailable

            if isinstance(e, LLMUnavailable):
                raise
            msg, fatal = llm_failure(e, self.llm_cfg)  # one scrubbed line (scrubbed before any cut)
            append_jsonl_many(self.out, [replace(rec, error=msg)])
            self.in_a_row += 1
            if fatal or self.in_a_row >= MAX_FAILURES_IN_A_ROW:
                why = "" if fatal else f"{self.in_a_row} questions in a row failed; the last: "
                raise EvalFailed(f"{self.spec}: {why}{msg} Answers so far are kept; run again to resume.") from None
            return
        self.in_a_row = 0
        t = ans.timings
        if hit is None and self.answers is not None:
            from eval.answer_cache import passages_of, prompt_tokens

            self.answers.put(key, ans.model_text or ans.text,
                             {k: t[k] for k in ("first_token_s", "total_s") if k in t},
                             prompt_tokens(q.query, passages_of(top)))
        from eval.answer_checks import cited_texts

        rec = replace(rec, answer=ans.text, cited_docids=ans.cited_docids, no_answer=ans.is_no_answer,
                      answer_key=key, model_answer=ans.model_text or None)
        rec = replace(rec, qa=qa_scores(ans.text, list(q.answers), rec.contexts, cited_texts(to_dict(rec))))
        if self.checker is not None:  # it reads and writes lines (it also brings older ones up to date)
            rec = from_dict(AnswerRecord, self.checker(to_dict(rec)))
        ret = rec.timings["retrieve_s"]
        rec = replace(rec, timings={**rec.timings, "first_token_s": round(ret + t.get("first_token_s", 0), 3),
                                    "total_s": round(ret + t.get("total_s", 0), 3)})
        append_jsonl_many(self.out, [rec])

    def flush(self) -> None:
        """Retrieval-only records go out in batches (one fsync each: thousands of questions a minute)."""
        if self.buf:
            append_jsonl_many(self.out, self.buf)
            self.buf = []


def prompt_order(got: list, top_k: int) -> list:
    """A question's (answerer, nodes, record) triples with prompts that begin alike adjacent: sorted
    by their top-k passage ids, which visits the prompts' prefix tree depth-first, so each shared
    run of first passages is read by the LLM once (its KV cache holds the previous prompt)."""
    return sorted(got, key=lambda g: [nw.node.node_id for nw in g[1][:top_k]])


def answer_round(answerers: list, questions: list, top_k: int, desc: str = "", progress: bool = True) -> None:
    """Each question of the round by every answerer that still lacks it, in prompt_order."""
    from tqdm.auto import tqdm

    try:
        for q in tqdm(questions, desc=desc or "+".join(slug(a.spec) for a in answerers), unit="q",
                      disable=not progress):
            got = [(a, *a.retrieve(q)) for a in answerers if q.qid in a.todo]
            for a, nodes, rec in prompt_order(got, top_k):
                a.answer(q, nodes, rec)
    finally:  # what was retrieved is kept even when a question stops the round
        for a in answerers:
            a.flush()
