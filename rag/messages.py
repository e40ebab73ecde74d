"""An exception as the one line a user sees: what is wrong and what to do, scrubbed of keys.

Errors the user can act on (rag.errors.UserError, missing files, the LLM endpoint's refusals) get
their message; anything else is a bug, which `explain` says is unexpected (its caller logs the
traceback). Used by the `distilrag` commands, the chat app and the batch harness alike.
"""
from __future__ import annotations

from rag.errors import UserError, llm_error_message, public_endpoint, scrub


def user_message(e: BaseException) -> str | None:
    """A scrubbed one-line message for errors a user can act on; None for bugs."""
    from rag.llm import LLMConfig, LLMUnavailable

    if isinstance(e, LLMUnavailable):
        return scrub(f"The LLM is unavailable: {e}")
    if isinstance(e, UserError):
        return scrub(str(e))
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        name = getattr(e, "filename", None)
        return scrub(f"{e.strerror or e}: {name}" if name else str(e))
    cfg = LLMConfig.from_env()
    where = "the local LLM server" if cfg.is_local else public_endpoint(cfg.endpoint)
    msg = llm_error_message(e, where, cfg.api_key_env, cfg.is_local)
    if msg:
        return msg
    if isinstance(e, ConnectionError):
        return f"The LLM connection failed: {scrub(str(e))[:300]}. Try again."
    return None


def explain(e: BaseException) -> str:
    """Any error as one scrubbed line; unexpected ones say so (their traceback is logged by the caller)."""
    msg = user_message(e)
    if msg is None:
        msg = f"Unexpected error ({type(e).__name__}): {scrub(str(e))[:300]}"
    return msg
