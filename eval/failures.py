"""How the harness fails: one scrubbed line per failed question, a run stopped when the endpoint
is down, and a retriever that answered nothing failing the run (eval/run.py uses these)."""
from __future__ import annotations

import sys
from pathlib import Path

from rag.errors import UserError, scrub


class EvalFailed(UserError, RuntimeError):
    pass


def llm_failure(e: BaseException, llm_cfg=None) -> tuple[str, bool]:
    """(one scrubbed line naming the endpoint, whether every other question would fail the same way)."""
    import openai

    from rag.errors import llm_error_message, public_endpoint
    from rag.llm import LLMConfig

    cfg = llm_cfg or LLMConfig.from_env()
    where = "the local LLM server" if cfg.is_local else public_endpoint(cfg.endpoint)
    msg = llm_error_message(e, where, cfg.api_key_env, cfg.is_local) or (
        str(e) if isinstance(e, UserError) else f"answering via {where} failed: {type(e).__name__}: "
                                                f"{scrub(str(e), (cfg.api_key_env,))[:200]}")
    fatal = isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError,
                           openai.APIConnectionError)) and not isinstance(e, openai.APITimeoutError)
    return scrub(msg, (cfg.api_key_env,)), fatal


def last_error(path: Path, qids: set[str]) -> str:
    """The error text of the last failed record among `qids` ("" if none recorded one)."""
    from rag.records import read_jsonl

    errors = [r["error"] for r in read_jsonl(path) if r.get("qid") in qids and r.get("error")] if path.exists() else []
    return scrub(errors[-1])[:300] if errors else ""


def check_failures(results: dict[str, dict]) -> None:
    """Say how many questions failed per retriever; a retriever that answered none fails the run."""
    dead = []
    for spec, m in results.items():
        n, bad = m.get("n_questions", 0), m.get("n_errors", 0)
        if not bad:
            continue
        why = f" (last error: {m['last_error']})" if m.get("last_error") else ""
        if bad >= n:
            dead.append(f"{spec}{why}")
        else:
            print(f"warning: {spec}: {bad} of {n} questions failed{why}; run the command again to "
                  "retry them.", file=sys.stderr)
    if dead:
        raise EvalFailed(f"every question failed for {'; '.join(dead)}. Fix the cause and run again "
                         "(answered questions are kept).")
