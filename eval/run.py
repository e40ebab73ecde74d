"""Batch QA evaluation: the app's chain over a question set, for several retrievers, resumably.

    distilrag eval --corpus squad_dev --split test --retrievers base,distilled,bm25,hybrid
                   [--n 200] [--ragas-n 20] [--retrieval-only] [--name NAME]
                   [--grounding lexical|llm|off] [--dry-run] [--no-answer-cache] [--round-size 50]
    distilrag eval --corpus my_docs/ --queries questions.txt --retrievers base,bm25   # no gold labels
    distilrag eval report runs/eval/NAME          # re-draw the report of a finished run
    distilrag eval export-answers runs/eval/NAME FILE.jsonl.gz   # paid answers, to another machine
    distilrag eval import-answers FILE.jsonl.gz                  # (eval/answer_archive.py)

In:  a corpus (shipped name, JSONL or folder), its questions (the corpus's split, or --queries:
     JSONL of {qid, query, answers} or a text file with one question per line) and qrels when known.
Out: runs/eval/<name>/
       config.json                   the resolved settings (a rerun must match them to resume)
       <retriever>/answers.jsonl     per question: question, references, retrieved docids+scores,
                                     contexts, answer, cited docids, QA scores, latencies
       <retriever>/run.trec          TREC run file (depth --depth) read back by rag.metrics
       <retriever>/ragas.jsonl       RAGAS judgements of the --ragas-n subset (eval/ragas_eval.py)
       <retriever>/metrics.json      IR metrics, EM/F1, answer-in-context, latencies, RAGAS + failures
       summary.json, report.md, report.html, plots/*.png   (eval/report.py)
Not-in-corpus questions (answers absent, topics present; abstaining is right):
    distilrag eval --queries eval/data/not_in_corpus.jsonl --retrievers base,distilled --grounding llm
Answers are content-hash cached (eval/answer_cache.py) in the LLM cache labelling uses: a prompt
two retrievers share is paid once, a rerun pays none; --dry-run retrieves (cheap) and prints how
many distinct prompts would be paid and how long that takes, before any LLM work. Each answer is
checked for abstention and grounding (eval/answer_checks.py; --grounding llm adds a yes/no
verifier call per cited passage, cached the same way).
Answers are appended per question, so an interrupted run resumes where it stopped; questions go
in rounds (--round-size) that every retriever finishes before the next (question by question, every
retriever of a question in a row: eval/answering.py says why), and each round rewrites
the report, so a long run stopped anywhere leaves a paired report on part of its questions; each
retriever directory records the weights its spec resolved to (retriever.json), and answers from
other weights (a retrain re-points "distilled") are moved aside and asked again.
Retriever specs: base | distilled | bm25 | hybrid | hybrid:distilled | <model dir>, optionally
"+ranker" (the trained cross-encoder) or "+<cross-encoder dir>" as a reranker, e.g. base+ranker;
or run:<TREC run file>: rankings made earlier (a <retriever>/run.trec of a retrieval-only run, or
any other system's), replayed by question id, so a model's answers can be paid on a machine or
in a session that no longer has its weights.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from eval.plan import EvalConfig, load_done, ragas_subset, run_dir_of, select
from eval.answering import answer_round
from eval.questions import load_questions, questions_hash  # noqa: F401  (load_questions: part of this API)
from eval.failures import check_failures, last_error
from rag.pipelines import retrieval_function, slug, spec_identity
from rag.errors import UserError, scrub

_RESUME_KEYS = ("corpus", "corpus_hash", "split", "queries", "questions_hash", "n", "seed", "top_k", "depth",
                "retrieval_only")


def open_retriever(spec: str, questions: list, cfg: EvalConfig, corpus, run_dir: Path, llm=None,
                   llm_cfg=None, answers=None, pipelines: dict | None = None):
    """One retriever spec's directory for this round: answers of other weights moved aside, the
    questions it still lacks; returns its eval.answering.SpecAnswerer. `pipelines` keeps each
    spec's retrieval function for the next round (models and indexes load once per run) and is
    filled only when there is work (a finished run loads no model)."""
    from eval.answering import SpecAnswerer
    from rag.records import write_json

    d = run_dir / slug(spec)
    out = d / "answers.jsonl"
    ident, ident_path = {"spec": spec, **spec_identity(spec, corpus)}, d / "retriever.json"
    # Runs written before retriever.json existed have none: their answers are trusted.
    old = json.loads(ident_path.read_text()) if ident_path.exists() else None
    if out.exists() and old is not None and old != ident:
        aside = d.with_name(f"{d.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        print(f"{d} holds answers from other weights than {spec!r} resolves to now ({old} vs {ident}); "
              f"they are kept in {aside} and the questions are asked again.", file=sys.stderr)
        d.rename(aside)
    write_json(ident_path, ident)
    checker = None
    if not cfg.retrieval_only:
        from eval.answer_checks import Checker

        checker = Checker(cfg.grounding, llm, answers, llm_cfg)
    done = load_done(out, need_answer=not cfg.retrieval_only)
    todo = {q.qid for q in questions if q.qid not in done}
    pipelines = {} if pipelines is None else pipelines
    if todo and spec not in pipelines:
        pipelines[spec] = retrieval_function(spec, corpus, cfg.depth)
    return SpecAnswerer(spec, pipelines.get(spec), out, todo, cfg, corpus, llm, llm_cfg, answers, checker)


def finish_retriever(answerer, questions: list, qrels, cfg: EvalConfig, judge_cfg=None, judge_llm=None,
                     progress: bool = True, judge: bool = True, *, run_qids: list[str]) -> dict:
    """One retriever's records of these questions read back, checked and scored into
    run_dir/<slug>/; returns its metrics (RAGAS too when `judge`: rounds before the last leave
    it out, unless every metric is a string one). RAGAS judges the answered part of one seeded
    draw from `run_qids` (the whole run's questions), so every round's judged set is the same draw."""
    from eval.metrics_table import compute_metrics
    from rag.metrics import write_run
    from rag.records import write_json

    out = answerer.out
    d = out.parent
    done = load_done(out, need_answer=not cfg.retrieval_only)
    records = [done[q.qid] for q in questions if q.qid in done]
    if answerer.checker is not None:
        from eval.answer_checks import check_records

        records = check_records(records, out, answerer.checker)
    write_run(d / "run.trec", {r["qid"]: {doc: float(len(r["retrieved"]) - i) for i, doc in enumerate(r["retrieved"])}
                               for r in records}, tag=slug(answerer.spec))
    metrics = compute_metrics(records, qrels, n_asked=len(questions))
    if metrics["n_errors"]:
        metrics["last_error"] = last_error(out, {q.qid for q in questions} - done.keys())
    if cfg.ragas_n and not cfg.retrieval_only and judge:
        from eval.ragas_eval import JudgeConfig, judge_records

        pick = set(ragas_subset(run_qids, cfg.ragas_n, cfg.seed))
        sample = [r for r in records if r["qid"] in pick]
        metrics["ragas"] = judge_records(sample, d / "ragas.jsonl", judge_cfg or JudgeConfig(),
                                         llm=judge_llm, progress=progress)
    write_json(d / "metrics.json", metrics)
    return metrics


def prepare_run_dir(cfg: EvalConfig, corpus, out: str | None, overwrite: bool, questions=None) -> Path:
    from rag.records import write_json

    run_dir = run_dir_of(cfg, corpus, out)
    resolved = {**asdict(cfg), "corpus_hash": corpus.hash, "retrievers": list(cfg.retrievers)}
    if questions is not None:
        resolved["questions_hash"] = questions_hash(questions)
    cfg_path = run_dir / "config.json"
    if cfg_path.exists() and not overwrite:
        old = json.loads(cfg_path.read_text())
        # A key an older run did not record (questions_hash) cannot be compared: it is trusted.
        diff = [k for k in _RESUME_KEYS if old.get(k) != resolved.get(k) and (k in old or k not in resolved)]
        if diff:
            what = ["questions (the file's questions or references changed)" if k == "questions_hash" else k
                    for k in diff]
            raise SystemExit(f"error: {run_dir} holds a run with different {', '.join(what)}; "
                             "pass --name for a new run, or --overwrite to start this one again.")
        resolved["retrievers"] = list(dict.fromkeys(old.get("retrievers", []) + resolved["retrievers"]))
    elif overwrite and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    write_json(cfg_path, resolved)
    return run_dir


def run_eval(cfg: EvalConfig, out: str | None = None, overwrite: bool = False, llm=None, llm_cfg=None,
             judge_cfg=None, judge_llm=None, report: bool = True, progress: bool = True,
             cache=None) -> Path:
    """The whole harness; `llm`/`judge_llm` let tests inject fakes (the product never does) and
    `cache` another rag.llm_cache.LLMCache than the shared one."""
    from rag.corpus import load_corpus
    from rag.embedder import EmbedderNotFound
    from rag.settings import apply_offline_env

    apply_offline_env()
    questions, qrels = load_questions(cfg)  # first: a missing questions file fails before any work
    corpus = load_corpus(cfg.corpus)
    questions = select(questions, cfg.n, cfg.seed)
    # RAGAS judges after the answers are paid, so a metric set that cannot run fails here, first.
    judge_every_round = False  # LLM metrics are paid once, after the last round
    if cfg.ragas_n and not cfg.retrieval_only:
        from eval.ragas_eval import NON_LLM, JudgeConfig, resolve_metrics

        names = resolve_metrics(judge_cfg or JudgeConfig(), all(q.answers for q in questions))
        judge_every_round = set(names) <= set(NON_LLM)  # free: every partial report has them
    from collections import Counter

    clash = [name for name, n in Counter(slug(s) for s in cfg.retrievers).items() if n > 1]
    if clash:
        raise SystemExit(f"error: retrievers {clash} would share a directory; name model folders apart.")
    run_dir = prepare_run_dir(cfg, corpus, out, overwrite, questions)
    answers = None
    if not cfg.retrieval_only:
        from eval.answer_cache import open_answer_cache

        # No LLM is started here: the chain starts it on the first answer the cache lacks, so a
        # rerun served from the cache starts none.
        answers = open_answer_cache(llm_cfg, cache, cfg.answer_cache)
    pipelines = replayed_runs(cfg, questions, corpus)
    rounds = answer_rounds(questions, cfg)
    for k, part in enumerate(rounds, 1):
        opened, skipped = {}, {}
        for spec in cfg.retrievers:
            try:
                opened[spec] = open_retriever(spec, part, cfg, corpus, run_dir, llm=llm, llm_cfg=llm_cfg,
                                              answers=answers, pipelines=pipelines)
            except EmbedderNotFound as e:
                skipped[spec] = scrub(str(e))
                if k == 1:
                    print(f"skipping {spec}: {skipped[spec]}", file=sys.stderr)
        if not opened:
            raise SystemExit("error: no retriever could be evaluated (" +
                             "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
        answer_round([a for a in opened.values() if a.todo], part, cfg.top_k, progress=progress,
                     desc=f"round {k}/{len(rounds)}" if len(rounds) > 1 else "")
        results = {spec: finish_retriever(a, part, qrels, cfg, judge_cfg=judge_cfg, judge_llm=judge_llm,
                                          progress=progress, judge=k == len(rounds) or judge_every_round,
                                          run_qids=[q.qid for q in questions])
                   for spec, a in opened.items()}
        _write_summary(run_dir, results, skipped, qrels, [q.qid for q in part], asked=len(questions), report=report)
        if k < len(rounds) and progress:
            print(f"round {k}/{len(rounds)}: {len(part)} of {len(questions)} questions answered by every "
                  f"retriever; the report so far: {run_dir / 'report.md'}", file=sys.stderr)
    check_failures({s: m for s, m in results.items() if s in cfg.retrievers})
    return run_dir


def replayed_runs(cfg: EvalConfig, questions: list, corpus) -> dict:
    """{spec: retrieval function} of the "run:<file>" retrievers, each checked to rank every
    question of this evaluation before any answer is paid."""
    from rag.pipelines import run_file

    replays = {}
    for spec in cfg.retrievers:
        if (path := run_file(spec)) is None:
            continue
        replays[spec] = retrieval_function(spec, corpus, cfg.depth)
        missing = [q.qid for q in questions if q.qid not in replays[spec].qids]
        if missing:
            raise UserError(f"{path} has no ranking for {len(missing)} of the {len(questions)} "
                            f"questions (e.g. {missing[0]!r}): give a run of the questions this evaluation "
                            "asks (the same corpus, split, --n and --seed).")
    return replays


def answer_rounds(questions: list, cfg: EvalConfig) -> list[list]:
    """Growing prefixes of a seeded shuffle, `cfg.round_size` more each: every retriever answers a
    round before the next begins, so a long run stopped at any point has a paired report on a
    random part of its questions (not the first articles only). Retrieval-only runs are one round."""
    import random

    if cfg.retrieval_only or cfg.round_size <= 0 or cfg.round_size >= len(questions):
        return [list(questions)]
    order = random.Random(f"rounds-{cfg.seed}").sample(list(questions), len(questions))
    ends = list(range(cfg.round_size, len(order), cfg.round_size)) + [len(order)]
    return [order[:e] for e in ends]


def _write_summary(run_dir: Path, results: dict, skipped: dict, qrels, qids: list[str], asked: int,
                   report: bool) -> None:
    """summary.json and the report of the questions `qids` answered by every retriever: a resumed
    run may hold answers of a later round already, which this round's report must leave out."""
    from rag.records import write_json

    done = len(qids)
    resolved = json.loads((run_dir / "config.json").read_text())
    if done == asked:
        for spec in resolved["retrievers"]:  # retrievers finished by an earlier invocation of this run
            f = run_dir / slug(spec) / "metrics.json"
            if spec not in results and spec not in skipped and f.exists():
                results[spec] = json.loads(f.read_text())
    summary = {"config": resolved, "skipped": skipped, "has_qrels": qrels is not None,
               "questions": {"answered_by_all": done, "asked": asked, "qids": qids},
               "retrievers": {slug(s): m for s, m in results.items()}}
    write_json(run_dir / "summary.json", summary)
    if report:
        from eval.report import write_report

        write_report(run_dir)


def judge_config(a: argparse.Namespace, llm_cfg):
    """The RAGAS judge: the answering LLM (--endpoint or DISTILRAG_LLM_*) unless --judge-* name another."""
    from eval.ragas_eval import JudgeConfig

    own = bool(a.judge_endpoint)
    return JudgeConfig(endpoint=a.judge_endpoint or llm_cfg.endpoint,
                       model=a.judge_model or ("" if own else llm_cfg.model),
                       api_key_env=a.judge_api_key_env or (JudgeConfig.api_key_env if own else llm_cfg.api_key_env),
                       timeout_s=a.judge_timeout, metrics=tuple(m for m in a.ragas_metrics.split(",") if m))


def build_parser() -> argparse.ArgumentParser:
    d = EvalConfig()
    ap = argparse.ArgumentParser(prog="distilrag eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=d.corpus, help="shipped corpus name, JSONL file or folder")
    ap.add_argument("--split", default=d.split, help='question split (train/dev/test); "" for all')
    ap.add_argument("--queries", default="", help="questions file (JSONL or one per line) instead of the corpus's")
    ap.add_argument("--qrels", default="", help="qrels TSV (qid 0 docid rel); default: the corpus's own")
    ap.add_argument("--retrievers", default=None, help="comma-separated specs, e.g. base,distilled,bm25,hybrid,base+ranker "
                    f"(default: {','.join(d.retrievers)} and the corpus's measured best pipeline)")
    ap.add_argument("--n", type=int, default=0, help="evaluate a seeded subset of N questions (0 = all)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--top-k", type=int, default=d.top_k, help="passages given to the LLM")
    ap.add_argument("--depth", type=int, default=d.depth, help="ranks kept for IR metrics")
    ap.add_argument("--retrieval-only", action="store_true", help="IR metrics only, no LLM (fast)")
    ap.add_argument("--round-size", type=int, default=d.round_size,
                    help="questions every retriever answers before the next round (a partial report each round)")
    ap.add_argument("--ragas-n", type=int, default=0, help="judge a seeded subset of M answers with RAGAS")
    ap.add_argument("--ragas-metrics", default="",
                    help="comma-separated RAGAS metrics (default: the string metrics with the embedded "
                         "judge, the classic set with an endpoint judge; eval/ragas_eval.py)")
    ap.add_argument("--grounding", default=d.grounding, choices=("lexical", "llm", "off"),
                    help="check each answer against its cited passages: lexical (free), llm (lexical "
                         "and a cached yes/no verifier call per cited passage) or off")
    ap.add_argument("--dry-run", action="store_true", help="retrieve, then print how many distinct prompts "
                    "would be paid and the estimated time; no LLM work")
    ap.add_argument("--no-answer-cache", action="store_true", help="ask the LLM even for prompts answered before")
    ap.add_argument("--name", default="", help="run name under runs/eval/ (default from corpus/split/n)")
    ap.add_argument("--out", default=None, help="explicit run directory (overrides --name)")
    ap.add_argument("--overwrite", action="store_true", help="discard an existing run of the same name")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    for who in ("", "judge-"):
        ap.add_argument(f"--{who}endpoint", default=None,
                        help=f'{"RAGAS judge (default: the answering LLM)" if who else "answering LLM"}: '
                             '"local" or an OpenAI-compatible /v1 URL')
        ap.add_argument(f"--{who}model", default=None, help="model name at that endpoint")
        ap.add_argument(f"--{who}api-key-env", default=None, help="env var holding that endpoint's key (never printed)")
    ap.add_argument("--judge-timeout", type=float, default=300.0, help="seconds per RAGAS metric per sample")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        from eval.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] in (["export-answers"], ["import-answers"]):
        from eval.answer_archive import main as archive_main

        return archive_main(argv)
    a = build_parser().parse_args(argv)
    from eval.plan import default_retrievers
    from rag.llm import LLMConfig
    from rag.settings import set_torch_threads

    set_torch_threads()
    cfg = EvalConfig(corpus=a.corpus, split=a.split, queries=a.queries, qrels=a.qrels,
                     retrievers=(tuple(s.strip() for s in a.retrievers.split(",") if s.strip())
                                 if a.retrievers is not None else default_retrievers(a.corpus)),
                     n=a.n, seed=a.seed, top_k=a.top_k, depth=max(a.depth, a.top_k),
                     retrieval_only=a.retrieval_only, ragas_n=a.ragas_n, name=a.name,
                     grounding=a.grounding, answer_cache=not a.no_answer_cache, round_size=a.round_size)
    pick = lambda *kv: {k: v for k, v in kv if v}  # noqa: E731
    llm_cfg = LLMConfig.from_env(**pick(("endpoint", a.endpoint), ("model", a.model), ("api_key_env", a.api_key_env)))
    judge_cfg = judge_config(a, llm_cfg)
    try:
        if a.dry_run:
            from eval.dry_run import main_dry_run

            return main_dry_run(cfg, a.out, llm_cfg, judge_cfg)
        run_dir = run_eval(cfg, out=a.out, overwrite=a.overwrite, llm_cfg=llm_cfg, judge_cfg=judge_cfg,
                           progress=not a.quiet)
    except (UserError, FileNotFoundError) as e:
        from rag.messages import user_message

        print(f"error: {user_message(e) or scrub(str(e))}", file=sys.stderr)
        return 2
    print((run_dir / "report.md").read_text() if (run_dir / "report.md").exists() else "")
    print(f"run directory: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
