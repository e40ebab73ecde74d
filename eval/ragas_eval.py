"""RAGAS judging of answered questions, with every failure counted instead of averaged away.

    distilrag eval ... --ragas-n 20 [--judge-endpoint URL --judge-model NAME --judge-api-key-env VAR]

In:  answer records from eval.run (question, answer, contexts, reference answers); a judge
     (the embedded local LLM by default, or any OpenAI-compatible endpoint).
Out: <retriever>/ragas.jsonl, one record per question:
     {qid, judge, metrics: {name: {value, status, error, seconds}}}, appended as each question is
     judged (a rerun judges only the metrics a question lacks: read_judgements merges its rows),
     and a per-metric summary
     {mean, n, n_ok, n_parse_error, n_timeout, n_nan, n_error, seconds_mean}.

Metrics (ragas 0.4.3 "collections", scored with `ascore`, never `score`, which calls asyncio.run):
  the classic set with a reference answer: faithfulness, answer_relevancy, context_precision
  (with reference), context_recall, factual_correctness; reference-free (a user's corpus without
  gold answers): faithfulness, answer_relevancy, context_precision_noref (judged against the
  response). Also answer_correctness; NVIDIA's answer_accuracy, context_relevance and
  response_groundedness (a short 0/1/2 rating, asked twice); and the non-LLM string_presence,
  non_llm_string_similarity, rouge_score, exact_match, bleu_score, chrf_score and
  semantic_similarity (the base embedder's cosine; free). Any of them with --ragas-metrics.
Default set (default_metrics): with an endpoint judge, the classic set. With the embedded judge,
  what was measured to agree with the gold truth at an affordable cost on 2 CPU cores
  (docs/qa-squad_dev.md, "RAGAS with the embedded judge"; a test recomputes that selection from
  the committed judgements and holds this default to it): only non-LLM metrics (not exact match,
  0 for every answer a sentence long), so a question set without references has no default there
  and the harness says so before answering anything.
A mean is over the samples whose status is "ok"; the counts beside it say how many were not.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

WITH_REFERENCE = ("faithfulness", "answer_relevancy", "context_precision", "context_recall",
                  "factual_correctness")
REFERENCE_FREE = ("faithfulness", "answer_relevancy", "context_precision_noref")
NVIDIA = ("answer_accuracy", "context_relevance", "response_groundedness")
NON_LLM = ("string_presence", "non_llm_string_similarity", "rouge_score",  # need a reference, no judge
           "exact_match", "bleu_score", "chrf_score", "semantic_similarity")  # (the last: MiniLM cosines)
EMBEDDING_METRICS = ("answer_relevancy", "answer_correctness", "semantic_similarity")  # read the base embedder
ALL_METRICS = WITH_REFERENCE + ("answer_correctness", "context_precision_noref") + NVIDIA + NON_LLM
STATUSES = ("ok", "parse_error", "timeout", "nan", "error")

# Which sample fields each metric's ascore() takes.
_ARGS = {
    "faithfulness": ("user_input", "response", "retrieved_contexts"),
    "answer_relevancy": ("user_input", "response"),
    "context_precision": ("user_input", "reference", "retrieved_contexts"),
    "context_precision_noref": ("user_input", "response", "retrieved_contexts"),
    "context_recall": ("user_input", "retrieved_contexts", "reference"),
    "factual_correctness": ("response", "reference"),
    "answer_correctness": ("user_input", "response", "reference"),
    "answer_accuracy": ("user_input", "response", "reference"),
    "context_relevance": ("user_input", "retrieved_contexts"),
    "response_groundedness": ("response", "retrieved_contexts"),
    "string_presence": ("reference", "response"),
    "non_llm_string_similarity": ("reference", "response"),
    "rouge_score": ("reference", "response"),
    "exact_match": ("reference", "response"),
    "bleu_score": ("reference", "response"),
    "chrf_score": ("reference", "response"),
    "semantic_similarity": ("reference", "response"),
}


@dataclass(frozen=True)
class JudgeConfig:
    endpoint: str = "local"          # "local" (embedded llama.cpp) or an OpenAI-compatible /v1 URL
    model: str = ""                  # "" = the embedded model
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 300.0         # per metric per sample; a slower judgement counts as a timeout
    max_tokens: int = 1024
    max_retries: int = 1             # instructor re-asks once after unparseable JSON, then it is a failure
    strictness: int = 1              # answer_relevancy questions generated per answer (ragas default 3)
    concurrency: int = 1             # samples judged at once (1 for the local server: one slot)
    metrics: tuple[str, ...] = field(default_factory=tuple)  # () = chosen by whether references exist


def _import_ragas():
    try:
        import ragas  # noqa: F401
    except ImportError as e:
        raise ImportError("RAGAS judging needs the eval extra: `pip install -e '.[eval]'` "
                          "(ragas==0.4.3, langchain-community==0.4.1).") from e


def sentence_transformer_embeddings(model_path: str | None = None):
    """Our MiniLM behind ragas' modern embedding interface (its HuggingFace classes break offline)."""
    _import_ragas()
    from ragas.embeddings.base import BaseRagasEmbedding

    from rag.embedder import load_sentence_transformer, resolve_embedder

    model = load_sentence_transformer(model_path or resolve_embedder("base").path)

    class SentenceTransformerRagasEmbedding(BaseRagasEmbedding):
        def embed_text(self, text: str, **kw: Any) -> list[float]:
            return model.encode([text], normalize_embeddings=True)[0].tolist()

        async def aembed_text(self, text: str, **kw: Any) -> list[float]:
            return self.embed_text(text)

        def embed_texts(self, texts: list[str], **kw: Any) -> list[list[float]]:
            return model.encode(list(texts), normalize_embeddings=True).tolist()

        async def aembed_texts(self, texts: list[str], **kw: Any) -> list[list[float]]:
            return self.embed_texts(texts)

    return SentenceTransformerRagasEmbedding()


def make_judge(cfg: JudgeConfig, client=None):
    """A ragas InstructorLLM over an AsyncOpenAI client (instructor JSON mode)."""
    _import_ragas()
    from ragas.llms import llm_factory

    from rag.llm import LLMConfig, openai_client

    llm_cfg = LLMConfig(endpoint=cfg.endpoint, model=cfg.model, api_key_env=cfg.api_key_env,
                        timeout_s=cfg.timeout_s)
    client = client or openai_client(llm_cfg, async_=True)
    return llm_factory(llm_cfg.model_name, client=client, max_tokens=cfg.max_tokens,
                       max_retries=cfg.max_retries)


def build_metrics(names: Iterable[str], llm, embeddings=None, strictness: int = 1) -> dict[str, Any]:
    _import_ragas()
    from ragas.metrics import collections as C

    makers = {
        "faithfulness": lambda: C.Faithfulness(llm=llm),
        "answer_relevancy": lambda: C.AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=strictness),
        "context_precision": lambda: C.ContextPrecisionWithReference(llm=llm, name="context_precision"),
        "context_precision_noref": lambda: C.ContextPrecisionWithoutReference(llm=llm, name="context_precision_noref"),
        "context_recall": lambda: C.ContextRecall(llm=llm),
        "factual_correctness": lambda: C.FactualCorrectness(llm=llm),
        "answer_correctness": lambda: C.AnswerCorrectness(llm=llm, embeddings=embeddings),
        "answer_accuracy": lambda: C.AnswerAccuracy(llm=llm, max_retries=1),
        "context_relevance": lambda: C.ContextRelevance(llm=llm, max_retries=1),
        "response_groundedness": lambda: C.ResponseGroundedness(llm=llm, max_retries=1),
        "string_presence": lambda: C.StringPresence(),
        "non_llm_string_similarity": lambda: C.NonLLMStringSimilarity(),  # needs rapidfuzz
        "rouge_score": lambda: C.RougeScore(),  # needs rouge-score
        "exact_match": lambda: C.ExactMatch(),
        "bleu_score": lambda: C.BleuScore(),  # needs sacrebleu
        "chrf_score": lambda: C.CHRFScore(),  # needs sacrebleu
        "semantic_similarity": lambda: C.SemanticSimilarity(embeddings=embeddings),
    }
    unknown = [n for n in names if n not in makers]
    if unknown:
        raise ValueError(f"Unknown RAGAS metric(s) {unknown}; choose from {sorted(makers)}.")
    return {n: makers[n]() for n in names}


def classify_failure(exc: BaseException) -> str:
    """parse_error / timeout / error: the report counts each kind separately."""
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or any("Timeout" in n for n in names):
        return "timeout"
    parse_like = {"InstructorRetryException", "ValidationError", "JSONDecodeError",
                  "RagasOutputParserException", "IncompleteOutputException", "OutputParserException"}
    if names & parse_like:
        return "parse_error"
    return "error"


def sample_from_record(rec: dict) -> dict:
    """The ragas inputs for one answer record (reference = the first gold answer, if any)."""
    refs = rec.get("references") or []
    return {"user_input": rec["question"], "response": rec.get("answer") or "",
            "retrieved_contexts": rec.get("contexts") or [], "reference": refs[0] if refs else ""}


async def score_sample(metrics: dict[str, Any], sample: dict, timeout_s: float) -> dict[str, dict]:
    """Every metric on one sample; a failure is recorded with its kind, never raised or NaN-averaged."""
    out: dict[str, dict] = {}
    for name, metric in metrics.items():
        t0 = time.perf_counter()
        entry: dict[str, Any] = {"value": None, "status": "ok", "error": ""}
        try:
            res = await asyncio.wait_for(metric.ascore(**{k: sample[k] for k in _ARGS[name]}), timeout_s)
            value = getattr(res, "value", res)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                entry["status"] = "nan"
            else:
                entry["value"] = float(value)
        except Exception as e:  # any judge failure is data for the report, not a crash
            entry["status"] = classify_failure(e)
            from rag.errors import scrub

            entry["error"] = scrub(f"{type(e).__name__}: {e}")[:300]  # scrubbed before cut: no half key
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        out[name] = entry
    return out


# With the embedded 1.5B judge no LLM metric both agrees with the gold truth and is affordable
# (eval/ragas_select.py's thresholds; figures in docs/qa-squad_dev.md): what did agree is the default.
EMBEDDED_JUDGE_DEFAULT = ("string_presence", "non_llm_string_similarity", "rouge_score", "bleu_score", "chrf_score",
                          "semantic_similarity")


def default_metrics(has_reference: bool, endpoint: str = "local") -> tuple[str, ...]:
    """The metrics judged when --ragas-metrics names none; () when none applies."""
    if endpoint == "local":
        return EMBEDDED_JUDGE_DEFAULT if has_reference else ()
    return WITH_REFERENCE if has_reference else REFERENCE_FREE


def resolve_metrics(cfg: JudgeConfig, has_reference: bool) -> tuple[str, ...]:
    """The metrics to judge, or a UserError saying what to give when no default applies."""
    from rag.errors import UserError

    names = cfg.metrics or default_metrics(has_reference, cfg.endpoint)
    if not names:
        raise UserError("RAGAS: these questions have no reference answers, and with the embedded judge "
                        "no reference-free metric agrees with the gold truth at an affordable cost "
                        "(docs/qa-squad_dev.md). Name a judge with --judge-endpoint (the classic "
                        "reference-free set is its default), or metrics with --ragas-metrics "
                        "(e.g. faithfulness: ~35 s a sample here), or leave out --ragas-n.")
    return names


def read_judgements(path: Path) -> list[dict]:
    """One record per question, its metrics merged over the rows appended for it (a rerun that
    asks for more metrics appends a row with only those); a later row's metric wins."""
    from rag.records import read_jsonl

    by_qid: dict[str, dict] = {}
    for r in read_jsonl(path) if Path(path).exists() else []:
        have = by_qid.setdefault(r["qid"], {"qid": r["qid"], "metrics": {}})
        have["metrics"].update(r.get("metrics") or {})
        have["judge"] = r.get("judge")
    return list(by_qid.values())


def missing_metrics(path: Path, qids: Iterable[str], names: Iterable[str]) -> dict[str, list[str]]:
    """qid -> the metrics of `names` it has no judgement for in `path` (qids lacking none left out):
    what the judge pays for, and what the dry run prices."""
    have = {r["qid"]: r["metrics"] for r in read_judgements(path)}
    missing = {q: [n for n in names if n not in have.get(q, {})] for q in qids}
    return {q: m for q, m in missing.items() if m}


async def ajudge_records(records: list[dict], out_path: Path, cfg: JudgeConfig, llm=None,
                         embeddings=None, progress: bool = False) -> dict[str, dict]:
    """Judge each of `records` on the metrics it lacks in out_path (a rerun pays only what is new,
    a metric added later included), append the results, return the summary."""
    from rag.records import append_jsonl

    out_path = Path(out_path)
    names = resolve_metrics(cfg, all(r.get("references") for r in records) if records else False)
    missing = missing_metrics(out_path, [r["qid"] for r in records], names)
    todo = [(r, missing[r["qid"]]) for r in records if r["qid"] in missing]
    if todo:
        need = [n for n in names if any(n in m for m in missing.values())]
        llm = llm or (make_judge(cfg) if set(need) - set(NON_LLM) else None)  # string metrics need no judge
        needs_emb = bool(set(need) & set(EMBEDDING_METRICS))
        if needs_emb and embeddings is None:
            embeddings = sentence_transformer_embeddings()
        metrics = build_metrics(need, llm, embeddings, cfg.strictness)
        sem = asyncio.Semaphore(max(1, cfg.concurrency))
        judge_name = getattr(llm, "model", "judge")
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), disable=not progress, desc="ragas", unit="q")

        async def one(rec, lacking):
            async with sem:
                scores = await score_sample({n: metrics[n] for n in lacking}, sample_from_record(rec), cfg.timeout_s)
            append_jsonl(out_path, {"qid": rec["qid"], "judge": judge_name, "metrics": scores})
            bar.update(1)

        await asyncio.gather(*(one(r, lacking) for r, lacking in todo))
        bar.close()
    keep = {r["qid"] for r in records}
    return summarize([r for r in read_judgements(out_path) if r["qid"] in keep])


def judge_records(records: list[dict], out_path: Path, cfg: JudgeConfig, **kw) -> dict[str, dict]:
    """Sync entry for the CLI; inside a running event loop (Streamlit) call ajudge_records."""
    return asyncio.run(ajudge_records(records, out_path, cfg, **kw))


def summarize(judged: list[dict]) -> dict[str, dict]:
    """Per metric: mean over valid samples plus a count of each failure kind."""
    by_metric: dict[str, list[dict]] = {}
    for rec in judged:
        for name, entry in rec["metrics"].items():
            by_metric.setdefault(name, []).append(entry)
    out = {}
    for name, entries in sorted(by_metric.items()):
        ok = [e["value"] for e in entries if e["status"] == "ok"]
        s = {"n": len(entries), "mean": (sum(ok) / len(ok)) if ok else None,
             "seconds_mean": round(sum(e.get("seconds", 0) for e in entries) / len(entries), 3)}
        for st in STATUSES:
            s[f"n_{st}"] = sum(1 for e in entries if e["status"] == st)
        out[name] = s
    return out


def per_question_values(judged: Iterable[dict], metric: str) -> dict[str, float]:
    """qid -> value for valid judgements only (for paired bootstrap across retrievers)."""
    return {r["qid"]: r["metrics"][metric]["value"] for r in judged
            if metric in r["metrics"] and r["metrics"][metric]["status"] == "ok"}


def dumps_summary(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
