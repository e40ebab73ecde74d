"""Query synthesis for stage 1 when a user has documents but no queries (InPars / Promptagator).

    distilrag label --config my.yaml --queries.source=synthesize --queries.n=1000
    distilrag label --config ... --queries.synthetic=1000   # extra queries for the ranker to score

In:  a corpus (any loader: shipped, JSONL, a folder of documents)
Out: Query records, up to `per_passage` (1-3) per sampled passage: the LLM writes the questions
     from a few-shot prompt (one call per passage); empty, over-long, duplicate and
     copied-sentence questions are dropped, and so are the prompt's own example questions (a small
     model copies them for a passage it cannot read) and any question for which the base dense
     retriever does not find its source passage in the top `synth_filter_depth` (consistency
     filtering: an unanswerable or vague question teaches the student nothing). Asked for a number
     of questions (`want`), it writes from further passages of the same seeded order until that
     many survive, then, when the corpus runs out of passages, MAX_PER_PASSAGE questions from each
     passage again, up to WRITE_MORE times the calls planned, and says what it dropped.
All LLM calls go through the shared cache, so a re-run costs nothing.
"""
from __future__ import annotations

import hashlib
import random
import re

from rag.corpus import Corpus, load_corpus
from rag.llm_cache import LLMCache, cache_key
from rag.prompts import SYNTH_QUESTION, SYNTH_QUESTIONS
from rag.questions import question_key
from rag.records import Query
from retriever_training.label_cost import WRITE_MORE

MAX_PER_PASSAGE = len(SYNTH_QUESTIONS.examples[0][1])
_EXAMPLE_QUESTIONS = {q.rstrip("?").lower() for p in (SYNTH_QUESTION, SYNTH_QUESTIONS) for _, qs in p.examples for q in qs}


def prompt_of(per_passage: int) -> tuple[str, int]:
    """(prompt id, version) of the prompt that asks for `per_passage` questions."""
    p = SYNTH_QUESTION if per_passage == 1 else SYNTH_QUESTIONS
    return p.id, p.version


def question_messages(passage: str, k: int = 1) -> list[dict]:
    if k == 1:
        p = SYNTH_QUESTION
        shots = "\n\n".join(p.example.format(passage=ex, question=qs[0]) for ex, qs in p.examples)
        return [{"role": "system", "content": p.system},
                {"role": "user", "content": p.user.format(shots=shots, passage=passage)}]
    # Several questions: the examples as earlier chat turns; in one prompt the small model copied
    # the examples' questions for 3 of 5 passages.
    p = SYNTH_QUESTIONS
    messages = [{"role": "system", "content": p.system.format(k=k)}]
    for ex, qs in p.examples:
        messages += [{"role": "user", "content": p.user.format(passage=ex)},
                     {"role": "assistant", "content": "\n".join(qs[:k])}]
    return messages + [{"role": "user", "content": p.user.format(passage=passage)}]


def clean_question(text: str, passage: str) -> str | None:
    """The first line as a question, or None when it is unusable."""
    line = (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.IGNORECASE).strip().strip('"')
    if not (3 <= len(line.split()) <= 40):
        return None
    if line.rstrip("?").lower() in passage.lower():  # copied a sentence instead of asking
        return None
    if line.rstrip("?").lower() in _EXAMPLE_QUESTIONS:  # copied the prompt's example
        return None
    return line if line.endswith("?") else line + "?"


def clean_questions(text: str, passage: str, k: int) -> tuple[list[str], int]:
    """Up to k usable, distinct questions from a reply with one per line (list markers and
    numbering stripped), and how many lines were unusable."""
    out, keys, bad = [], set(), 0
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip()
        if not line:
            continue
        q = clean_question(line, passage)
        if q is None:
            bad += 1
        elif question_key(q) not in keys:
            keys.add(question_key(q))
            out.append(q)
    if len(out) > k:
        bad, out = bad + len(out) - k, out[:k]
    return out, bad


def sample_passages(corpus: Corpus, n: int, seed: int) -> list:
    """The passages questions are written from: a seeded shuffle, then the first n (a larger n
    keeps the smaller one's passages, and their cached calls)."""
    passages = list(corpus.passages)
    random.Random(seed).shuffle(passages)
    return passages[:n]


def _params(per_passage: int) -> dict:
    return {"temperature": 0.0, "max_tokens": 64 * per_passage}


def _call(passage, per_passage: int, llm_cfg) -> tuple[list[dict], str]:
    """(messages, cache key) of the call that writes questions from `passage`."""
    messages = question_messages(passage.text[:2000], per_passage)
    return messages, cache_key(llm_cfg.model_name, *prompt_of(per_passage), messages, _params(per_passage))


def synthesis_job(corpus: Corpus, n_passages: int, seed: int, per_passage: int = 1, llm_cfg=None):
    """What writing questions from those passages would pay, for a dry run: the calls not in the
    cache, their prompt tokens and the questions they generate (label_cost.JobSize; no LLM call)."""
    from rag.llm import LLMConfig
    from retriever_training.label_cost import QUESTION_TOKENS, SYNTH_PROMPT_TOKENS, JobSize, passage_tokens

    llm_cfg, cache = llm_cfg or LLMConfig.from_env(), LLMCache()
    todo = [p for p in sample_passages(corpus, n_passages, seed) if cache.get(_call(p, per_passage, llm_cfg)[1]) is None]
    return JobSize(queries=per_passage * n_passages, pairs=len(todo), unique_passages=len(todo),
                   prompt_tokens=sum(passage_tokens(p.text[:2000]) + SYNTH_PROMPT_TOKENS for p in todo),
                   completion_tokens=QUESTION_TOKENS * per_passage * len(todo))


def stand_in_queries(corpus: Corpus, n_passages: int, seed: int) -> list[Query]:
    """For a dry run before the LLM has written the queries: one stand-in per passage it would
    write from (the passage's opening words), so that the candidates, and the labelling estimate,
    are those of queries about the same passages."""
    return [Query(qid=f"stand-in-{i}", query=" ".join(p.text.split()[:12]), split="stand-in")
            for i, p in enumerate(sample_passages(corpus, n_passages, seed))]


def synthesize_queries(corpus_name: str, cfg, client=None, llm_cfg=None, corpus: Corpus | None = None,
                       progress: bool = True, n_passages: int | None = None, seed: int | None = None,
                       per_passage: int = 1, want: int | None = None) -> list[Query]:
    """`per_passage` questions from each of `n_passages` seeded passages (default: the queries
    config's synth_passages or n, one question each), filtered as the module says; with `want`,
    further passages, then more questions per passage, until `want` questions survive (at most
    WRITE_MORE x n_passages calls)."""
    from tqdm.auto import tqdm

    from rag.llm import LLMConfig, openai_client
    from rag.retrievers import make_retriever

    if not 1 <= per_passage <= MAX_PER_PASSAGE:
        raise ValueError(f"Questions per passage must be 1..{MAX_PER_PASSAGE}, not {per_passage}.")
    corpus = corpus or load_corpus(corpus_name)
    llm_cfg = llm_cfg or LLMConfig.from_env()
    planned = n_passages or cfg.synth_passages or cfg.n
    passages = sample_passages(corpus, planned * WRITE_MORE if want else planned, cfg.seed if seed is None else seed)
    retriever = make_retriever("base", corpus, top_k=cfg.synth_filter_depth)
    cache = LLMCache()
    out: list[Query] = []
    dropped = {"malformed": 0, "repeated": 0, "not_found": 0}
    seen: set[str] = set()  # question_keys: two passages can yield one question, kept and counted once
    work = [(p, per_passage) for p in passages]
    if want and per_passage < MAX_PER_PASSAGE:  # a corpus with too few passages: more questions from each
        work += [(p, MAX_PER_PASSAGE) for p in passages]
    written = 0
    for p, k in tqdm(work, desc="synthesise queries", unit="call", disable=not progress):
        if (want and written >= planned and len(out) >= want) or written >= WRITE_MORE * planned:
            break
        written += 1
        messages, key = _call(p, k, llm_cfg)
        text = cache.get(key)
        if text is None:
            client = client or openai_client(llm_cfg)  # started only when a call is not cached
            resp = client.chat.completions.create(model=llm_cfg.model_name, messages=messages, **_params(k))
            text = resp.choices[0].message.content or ""
            cache.put(key, text)
        if k == 1:
            q = clean_question(text, p.text)
            questions, bad = ([q], 0) if q else ([], 1)
        else:
            questions, bad = clean_questions(text, p.text, k)
        dropped["malformed"] += bad
        for q in questions:
            if question_key(q) in seen:
                dropped["repeated"] += 1
                continue
            if p.docid not in {n.node.node_id for n in retriever.retrieve(q)}:
                dropped["not_found"] += 1
                continue
            qid = "syn-" + hashlib.sha1(f"{p.docid}|{q}".encode()).hexdigest()[:12]
            seen.add(question_key(q))
            out.append(Query(qid=qid, query=q, split="synthetic"))
    out = out[:want] if want else out  # a call's several questions can overshoot it
    why = (f"{dropped['malformed']} unusable (empty, too long, a copied sentence or example), "
           f"{dropped['repeated']} asked already, {dropped['not_found']} whose passage the base retriever does not rank in its top {cfg.synth_filter_depth}")
    if not out:
        raise ValueError(f"No LLM-written question survived filtering ({why}): check the LLM endpoint, and that "
                         "the documents are readable text.")
    if progress:
        short = (f"; fewer than the {want} asked: the documents may be hard to ask about (code, tables, "
                 "boilerplate), or pass a query log (--queries)") if want and len(out) < want else ""
        print(f"questions written in {written} LLM calls: {len(out)} kept, {why}{short}", flush=True)
    return out
