"""`distilrag` — the command line: index, ask, llm, app, label, retrain, eval.

    distilrag index --corpus squad_dev --embedder base
    distilrag ask "Where did Super Bowl 50 take place?"
    distilrag llm fetch|start|stop|status
    distilrag app [--port 8501]
    distilrag label   --config retriever_training/configs/squad_dev.yaml [--dry-run]
    distilrag retrain --config retriever_training/configs/squad_dev.yaml [--force]
    distilrag eval --corpus squad_dev --split test --retrievers base,distilled,bm25,hybrid
Every subcommand has --help. The only code that imports from every wing.
Dense indexes live in FAISS files unless `--vector-store milvus [--milvus-uri URI]` is given
(anywhere on the line; or DISTILRAG_VECTOR_STORE / DISTILRAG_MILVUS_URI): the embedded Milvus
engine's file by default, a Milvus server or cluster by its URI (rag/milvus_index.py).
"""
from __future__ import annotations

import argparse
import os
import sys


def _llm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default=None,
                   help='"local" (embedded llama.cpp, default) or an OpenAI-compatible base URL')
    p.add_argument("--model", default=None, help="model name at the endpoint")
    p.add_argument("--api-key-env", default=None, help="env var holding the endpoint's key (never printed)")


def _llm_cfg(a):
    from rag.llm import LLMConfig

    over = {k: v for k, v in (("endpoint", a.endpoint), ("model", a.model), ("api_key_env", a.api_key_env)) if v}
    # The flags become this process's settings, so every layer (errors naming the endpoint and the
    # key's variable included) describes the endpoint actually used.
    for (k, v), var in zip(over.items(), [f"DISTILRAG_LLM_{k.upper()}" for k in over]):
        os.environ[var] = v
    return LLMConfig.from_env(**over)


def cmd_index(a) -> int:
    from rag.corpus import load_corpus
    from rag.index import build_index, get_index, index_location, stored_manifest
    from rag.embedder import resolve_embedder

    corpus = load_corpus(a.corpus)
    for name, why in corpus.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    eid = resolve_embedder(a.embedder, corpus)
    if a.rebuild:
        build_index(corpus, eid, index_type=a.index_type)
    else:
        get_index(corpus, a.embedder, index_type=a.index_type)
    m = stored_manifest(corpus, eid)
    print(f"index {index_location(corpus, eid)}: {m.n_passages} passages, {m.index_type}, embedder {m.embedder_label} "
          f"({m.embedder_hash[:12]}), built in {m.build_seconds}s")
    return 0


def cmd_ask(a) -> int:
    from rag.chain import build_chain

    retriever, reranker = a.retriever, a.reranker
    if retriever == "best":  # the pipeline the corpus's published verdict measured best, else base
        from rag.pipelines import best_spec

        retriever, _, best_reranker = best_spec(a.corpus).partition("+")
        reranker = reranker or best_reranker or None
    chain = build_chain(a.corpus, retriever, top_k=a.top_k, reranker=reranker, llm_cfg=_llm_cfg(a))
    ans = chain.answer(a.question, on_token=lambda t: print(t, end="", flush=True))
    print("\n")
    for s in ans.sources:
        mark = "*" if s.n in ans.cited else " "
        print(f"{mark}[{s.n}] {s.docid}  ({s.title}, score {s.score:.3f})")
        if a.show_passages:
            print("     " + s.text[:400].replace("\n", " "))
    t = ans.timings
    print(f"\nretrieval {t.get('retrieve_s', 0) * 1000:.0f} ms, first token {t.get('first_token_s', 0):.1f} s, "
          f"total {t.get('total_s', 0):.1f} s", file=sys.stderr)
    return 0


def cmd_llm(a) -> int:
    from rag import llm
    from rag.models import ensure_llm

    if a.action == "fetch":
        print(ensure_llm())
    elif a.action == "start":
        s = llm.start_local_server(llm.LLMConfig.from_env(), detach=True)
        print(f"local LLM server on {s.base_url} (pid {s.pid}); stop it with `distilrag llm stop`")
    elif a.action == "stop":
        s = llm.running_server()
        if s:
            s.stop()
            print("stopped")
        else:
            print("no local LLM server is running")
    else:
        s = llm.running_server()
        print(f"running on {s.base_url} (pid {s.pid})" if s else "not running")
    return 0


def cmd_app(a) -> int:
    import os
    import subprocess

    from rag.settings import REPO_ROOT, apply_offline_env

    apply_offline_env()
    script = REPO_ROOT / "app" / "streamlit_app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1",
           "--server.port", str(a.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    if a.background_retrain:
        _start_background_retrain(a.corpus)
    print(f"distilrag chat UI: http://127.0.0.1:{a.port}", flush=True)
    # From the repo root so Streamlit also reads .streamlit/config.toml (upload limit, toolbar).
    return subprocess.call(cmd, env={**os.environ, "DISTILRAG_CORPUS": a.corpus}, cwd=REPO_ROOT)


def _start_background_retrain(corpus: str) -> None:
    """The first run trains the shipped corpus's distilled retriever while the chat is usable."""
    from app import retrain_job
    from rag.embedder import published_path

    if published_path("distilled", corpus) is not None or retrain_job.config_for(corpus) is None:
        return
    pid = retrain_job.start(corpus)
    print(f"[distilrag] no distilled retriever for {corpus} yet: retraining it in the background from the "
          f"committed labels (pid {pid}, lowest CPU priority, resumable; log: "
          f"{retrain_job.log_path(corpus)}). The chat switches it on when it is published.", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="distilrag", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    ap.add_argument("--vector-store", choices=("faiss", "milvus"), help="where dense indexes live (default faiss)")
    ap.add_argument("--milvus-uri", help="Milvus: a local file (embedded engine) or http://host:19530")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="build or refresh the FAISS index of a corpus")
    p.add_argument("--corpus", default="squad_dev", help="shipped corpus name, JSONL file or folder")
    p.add_argument("--embedder", default="base", help='"base", "distilled" or a model directory')
    p.add_argument("--index-type", default="flat", choices=["flat", "ivf", "hnsw"])
    p.add_argument("--rebuild", action="store_true", help="rebuild even if a valid index exists")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("ask", help="answer a question with citations")
    p.add_argument("question")
    p.add_argument("--corpus", default="squad_dev")
    p.add_argument("--retriever", default="best",
                   help="best (the pipeline the corpus's published verdict measured best, else base) | base | "
                        "distilled | bm25 | hybrid | hybrid:distilled | <model dir>")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--reranker", default=None, help='"ranker" (the trained one) or a cross-encoder directory')
    p.add_argument("--show-passages", action="store_true")
    _llm_args(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("llm", help="fetch/verify the embedded model; start, stop or check its server")
    p.add_argument("action", choices=["fetch", "start", "stop", "status"])
    p.set_defaults(func=cmd_llm)

    p = sub.add_parser("app", help="launch the Streamlit chat UI on 127.0.0.1")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--corpus", default="squad_dev")
    p.add_argument("--background-retrain", action="store_true",
                   help="if the corpus has no distilled retriever yet, train it in the background")
    p.set_defaults(func=cmd_app)

    for name, mod, hlp in (("label", "retriever_training.label", "stages 1-3: queries, candidates, LLM rankings"),
                           ("retrain", "retriever_training.retrain", "stages 1-7: train and publish a distilled retriever"),
                           ("eval", "eval.run", "batch QA evaluation and report")):
        p = sub.add_parser(name, help=hlp, add_help=False)
        p.set_defaults(module=mod)

    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug anywhere (also after a subcommand that parses its own flags) shows tracebacks.
    debug = "--debug" in argv or os.environ.get("DISTILRAG_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    # The vector store, like --debug, is taken anywhere and passed on through the environment, so
    # every command and the processes it starts (the chat app, a background retrain) use one store.
    for flag, var in (("--vector-store", "DISTILRAG_VECTOR_STORE"), ("--milvus-uri", "DISTILRAG_MILVUS_URI")):
        value, argv = _pop_option(argv, flag)
        if value is not None:
            os.environ[var] = value
    args, rest = ap.parse_known_args(argv)
    if not hasattr(args, "module") and rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    from rag.settings import apply_offline_env

    apply_offline_env()
    try:
        if hasattr(args, "module"):
            import importlib

            return importlib.import_module(args.module).main(rest) or 0
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; what was finished is kept, run the command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors: one line that says what to do, no stack trace
        if debug:
            raise
        from rag.errors import scrub
        from rag.messages import user_message

        msg = user_message(e)
        if msg is not None:
            print(f"error: {msg}", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(e).__name__}: {scrub(str(e))[:300]} "
              "(a bug: rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 1


def _pop_option(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """`flag VALUE` or `flag=VALUE` anywhere in argv: (the last value, argv without them)."""
    value, out, it = None, [], iter(argv)
    for a in it:
        if a == flag:
            value = next(it, None)
            if value is None:
                raise SystemExit(f"error: {flag} needs a value")
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
        else:
            out.append(a)
    return value, out


if __name__ == "__main__":
    sys.exit(main())
