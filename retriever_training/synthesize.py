"""Query synthesis for stage 1 when a user has documents but no queries (InPars / Promptagator).

    distilrag label --config my.yaml --queries.source=synthesize --queries.n=1000
    distilrag label --config ... --queries.synthetic=1000   # extra queries for the ranker to score

In:  a corpus (any loader: shipped, JSONL, a folder of documents)
Out: Query records, up to `per_passage` (1-3) per sampled passage: the LLM writes the questions
     from a few-shot prompt (one call per passage); empty, over-long, duplicate and
     copied-sentence questions are dropped, and so is any question for which the base dense retriever does not find its source passage
     in the top `synth_filter_depth` (consistency filtering: an unanswerable or vague question
     teaches the student nothing).
All LLM calls go through the shared cache, so a re-run costs nothing.
"""
from __future__ import annotations

import hashlib
import random
import re

from rag.corpus import Corpus, load_corpus
from rag.llm_cache import LLMCache, cache_key
from rag.records import Query

PROMPT_ID, PROMPT_VERSION = "inpars-fewshot-question", 1
MULTI_PROMPT_ID, MULTI_PROMPT_VERSION = "inpars-fewshot-questions", 1  # several per passage
# Each passage's first question is the single-question prompt's example; the others show what
# "different" means (another fact of the passage, not a rewording).
FEW_SHOT = [
    ("The Amazon rainforest covers much of the Amazon basin of South America, an area of seven "
     "million square kilometres, of which five and a half million are covered by the rainforest.",
     ["How many square kilometres of the Amazon basin are covered by rainforest?",
      "On which continent is the Amazon basin?",
      "How large is the area of the Amazon basin?"]),
    ("Oxygen is a chemical element with symbol O and atomic number 8. It is a member of the "
     "chalcogen group on the periodic table and is a highly reactive nonmetal.",
     ["What is the atomic number of oxygen?",
      "To which group of the periodic table does oxygen belong?",
      "What is the chemical symbol of oxygen?"]),
    ("The Black Death was one of the most devastating pandemics in human history, peaking in "
     "Europe between 1347 and 1351.",
     ["In which years did the Black Death peak in Europe?",
      "Where did the Black Death peak between 1347 and 1351?",
      "What kind of disaster was the Black Death?"]),
]
MAX_PER_PASSAGE = len(FEW_SHOT[0][1])


def prompt_of(per_passage: int) -> tuple[str, int]:
    """(prompt id, version) of the prompt that asks for `per_passage` questions."""
    return (PROMPT_ID, PROMPT_VERSION) if per_passage == 1 else (MULTI_PROMPT_ID, MULTI_PROMPT_VERSION)


def question_messages(passage: str, k: int = 1) -> list[dict]:
    if k == 1:
        shots = "\n\n".join(f"Passage: {p}\nQuestion: {qs[0]}" for p, qs in FEW_SHOT)
        return [{"role": "system", "content": "You write one specific question that the given passage answers."},
                {"role": "user", "content": f"{shots}\n\nPassage: {passage}\nQuestion:"}]
    # Several questions: the examples as earlier chat turns; in one prompt the small model copied
    # the examples' questions for 3 of 5 passages.
    messages = [{"role": "system", "content": f"You write {k} different specific questions that the given "
                                              "passage answers, one per line, each about a different fact."}]
    for p, qs in FEW_SHOT:
        messages += [{"role": "user", "content": f"Passage: {p}"}, {"role": "assistant", "content": "\n".join(qs[:k])}]
    return messages + [{"role": "user", "content": f"Passage: {passage}"}]


def clean_question(text: str, passage: str) -> str | None:
    """The first line as a question, or None when it is unusable."""
    line = (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.IGNORECASE).strip().strip('"')
    if not (3 <= len(line.split()) <= 40):
        return None
    if line.rstrip("?").lower() in passage.lower():  # copied a sentence instead of asking
        return None
    return line if line.endswith("?") else line + "?"


def clean_questions(text: str, passage: str, k: int) -> tuple[list[str], int]:
    """Up to k usable, distinct questions from a reply with one per line (list markers and
    numbering stripped), and how many lines were unusable."""
    out, bad = [], 0
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip()
        if not line:
            continue
        q = clean_question(line, passage)
        if q is None:
            bad += 1
        elif q.lower() not in {o.lower() for o in out}:
            out.append(q)
    if len(out) > k:
        bad, out = bad + len(out) - k, out[:k]
    return out, bad


def synthesize_queries(corpus_name: str, cfg, client=None, llm_cfg=None, corpus: Corpus | None = None,
                       progress: bool = True, n_passages: int | None = None, seed: int | None = None,
                       per_passage: int = 1) -> list[Query]:
    """`per_passage` questions from each of `n_passages` seeded passages (default: the queries
    config's synth_passages or n, one question each), filtered as the module says."""
    from tqdm.auto import tqdm

    from rag.llm import LLMConfig, openai_client
    from rag.retrievers import make_retriever

    if not 1 <= per_passage <= MAX_PER_PASSAGE:
        raise ValueError(f"Questions per passage must be 1..{MAX_PER_PASSAGE}, not {per_passage}.")
    corpus = corpus or load_corpus(corpus_name)
    llm_cfg = llm_cfg or LLMConfig.from_env()
    n = n_passages or cfg.synth_passages or cfg.n
    # A seeded shuffle, then the first n: a larger n keeps the smaller one's passages (and their
    # cached calls).
    passages = list(corpus.passages)
    random.Random(cfg.seed if seed is None else seed).shuffle(passages)
    passages = passages[:n]
    retriever = make_retriever("base", corpus, top_k=cfg.synth_filter_depth)
    prompt = prompt_of(per_passage)
    params = {"temperature": 0.0, "max_tokens": 64 * per_passage}
    cache = LLMCache()
    out: list[Query] = []
    dropped = {"malformed": 0, "not_found": 0}
    for p in tqdm(passages, desc="synthesise queries", unit="passage", disable=not progress):
        messages = question_messages(p.text[:2000], per_passage)
        key = cache_key(llm_cfg.model_name, *prompt, messages, params)
        text = cache.get(key)
        if text is None:
            client = client or openai_client(llm_cfg)  # started only when a call is not cached
            resp = client.chat.completions.create(model=llm_cfg.model_name, messages=messages, **params)
            text = resp.choices[0].message.content or ""
            cache.put(key, text)
        if per_passage == 1:
            q = clean_question(text, p.text)
            questions, bad = ([q], 0) if q else ([], 1)
        else:
            questions, bad = clean_questions(text, p.text, per_passage)
        dropped["malformed"] += bad
        for q in questions:
            if p.docid not in {n.node.node_id for n in retriever.retrieve(q)}:
                dropped["not_found"] += 1
                continue
            qid = "syn-" + hashlib.sha1(f"{p.docid}|{q}".encode()).hexdigest()[:12]
            out.append(Query(qid=qid, query=q, split="synthetic"))
    if not out:
        raise ValueError(f"No synthetic query survived filtering ({dropped}); check the LLM endpoint.")
    return out
