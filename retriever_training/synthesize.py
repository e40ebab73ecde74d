"""Query synthesis for stage 1 when a user has documents but no queries (InPars / Promptagator).

    distilrag label --config my.yaml --queries.source=synthesize --queries.n=1000

In:  a corpus (any loader: shipped, JSONL, a folder of documents)
Out: Query records, one per sampled passage that survives filtering: the LLM writes a question
     from a few-shot prompt; empty, over-long, duplicate and copied-sentence questions are dropped,
     and so is any question for which the base dense retriever does not find its source passage
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
FEW_SHOT = [
    ("The Amazon rainforest covers much of the Amazon basin of South America, an area of seven "
     "million square kilometres, of which five and a half million are covered by the rainforest.",
     "How many square kilometres of the Amazon basin are covered by rainforest?"),
    ("Oxygen is a chemical element with symbol O and atomic number 8. It is a member of the "
     "chalcogen group on the periodic table and is a highly reactive nonmetal.",
     "What is the atomic number of oxygen?"),
    ("The Black Death was one of the most devastating pandemics in human history, peaking in "
     "Europe between 1347 and 1351.",
     "In which years did the Black Death peak in Europe?"),
]


def question_messages(passage: str) -> list[dict]:
    shots = "\n\n".join(f"Passage: {p}\nQuestion: {q}" for p, q in FEW_SHOT)
    return [{"role": "system", "content": "You write one specific question that the given passage answers."},
            {"role": "user", "content": f"{shots}\n\nPassage: {passage}\nQuestion:"}]


def clean_question(text: str, passage: str) -> str | None:
    """The first line as a question, or None when it is unusable."""
    line = (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""
    line = re.sub(r"^(question|q)\s*[:.]\s*", "", line, flags=re.IGNORECASE).strip().strip('"')
    if not (3 <= len(line.split()) <= 40):
        return None
    if line.rstrip("?").lower() in passage.lower():  # copied a sentence instead of asking
        return None
    return line if line.endswith("?") else line + "?"


def synthesize_queries(corpus_name: str, cfg, client=None, llm_cfg=None, corpus: Corpus | None = None,
                       progress: bool = True) -> list[Query]:
    from tqdm.auto import tqdm

    from rag.llm import LLMConfig, openai_client
    from rag.retrievers import make_retriever

    corpus = corpus or load_corpus(corpus_name)
    llm_cfg = llm_cfg or LLMConfig.from_env()
    client = client or openai_client(llm_cfg)
    cache = LLMCache()
    n = cfg.synth_passages or cfg.n
    passages = random.Random(cfg.seed).sample(corpus.passages, min(n, len(corpus.passages)))
    retriever = make_retriever("base", corpus, top_k=cfg.synth_filter_depth)
    params = {"temperature": 0.0, "max_tokens": 64}
    out: list[Query] = []
    dropped = {"malformed": 0, "not_found": 0}
    for p in tqdm(passages, desc="synthesise queries", unit="passage", disable=not progress):
        messages = question_messages(p.text[:2000])
        key = cache_key(llm_cfg.model_name, PROMPT_ID, PROMPT_VERSION, messages, params)
        text = cache.get(key)
        if text is None:
            resp = client.chat.completions.create(model=llm_cfg.model_name, messages=messages, **params)
            text = resp.choices[0].message.content or ""
            cache.put(key, text)
        q = clean_question(text, p.text)
        if q is None:
            dropped["malformed"] += 1
            continue
        if p.docid not in {n.node.node_id for n in retriever.retrieve(q)}:
            dropped["not_found"] += 1
            continue
        qid = "syn-" + hashlib.sha1(f"{p.docid}|{q}".encode()).hexdigest()[:12]
        out.append(Query(qid=qid, query=q, split="synthetic"))
    if not out:
        raise ValueError(f"No synthetic query survived filtering ({dropped}); check the LLM endpoint.")
    return out
