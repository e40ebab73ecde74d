"""What a user sees when something goes wrong: one line that names the thing and the fix, no secret.

Every face (the `distilrag` commands, the chat app, the batch harness) turns an exception into
text through rag.messages (`user_message` / `explain`), and every text that leaves the process
(stdout, logs, answer records) passes `scrub` first, so an endpoint that echoes a key in its error body cannot
get it printed or stored. Errors a user can act on subclass `UserError` (exit code 2); anything
else is a bug and keeps its traceback (on stderr with `--debug`, in the app's terminal).
"""
from __future__ import annotations

import os
import re


class UserError(Exception):
    """An error the user can fix: its message says what is wrong and what to do."""


# Names of variables that hold secrets: whatever the configured key variable is, these patterns too.
_SECRET_NAME = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.I)
# Key shapes that endpoints echo back ("Incorrect API key provided: sk-..."), bearer headers.
_KEY_SHAPES = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9_\-\.=]{8,}"), r"\1 ***"),
    (re.compile(r"(?i)(api[_-]?key[\"'=: ]+)[A-Za-z0-9_\-\.]{8,}"), r"\1***"),
)


def secret_values(extra_env: tuple[str, ...] = ()) -> list[str]:
    """Values of the environment variables that hold keys (the configured one and the usual names)."""
    names = {n for n in os.environ if _SECRET_NAME.search(n)} | set(extra_env)
    names.add(os.environ.get("DISTILRAG_LLM_API_KEY_ENV", "OPENAI_API_KEY"))
    vals = {os.environ.get(n, "") for n in names}
    return sorted((v for v in vals if len(v) >= 4), key=len, reverse=True)


def scrub(text: str, extra_env: tuple[str, ...] = ()) -> str:
    """`text` with every key value and key-shaped token replaced by ***."""
    text = str(text)
    for v in secret_values(extra_env):
        text = text.replace(v, "***")
    for pattern, repl in _KEY_SHAPES:
        text = pattern.sub(repl, text)
    return text


def public_endpoint(url: str) -> str:
    """An endpoint URL fit to display: credentials and query strings removed."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        u = urlsplit(url)
        host = u.hostname or ""
        netloc = host + (f":{u.port}" if u.port else "")
    except ValueError:
        return "(unparsable URL)"
    return urlunsplit((u.scheme, netloc, u.path, "", ""))


def llm_error_message(e: BaseException, where: str, key_env: str = "OPENAI_API_KEY",
                      is_local: bool = False) -> str | None:
    """One line for an error from the `openai` client talking to `where`; None if it is not one."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a core dependency
        return None
    if isinstance(e, openai.AuthenticationError):
        return f"{where} refused the API key in ${key_env}: check the key (it is never printed)."
    if isinstance(e, openai.PermissionDeniedError):
        return f"{where} denied access (403) for the key in ${key_env}: check the key's permissions."
    if isinstance(e, openai.NotFoundError):
        return f"{where} answered 404: check the endpoint URL (it must end in /v1) and the model name."
    if isinstance(e, openai.RateLimitError):
        return f"{where} is rate-limiting (429) after retries: wait, or lower the request rate."
    if isinstance(e, openai.APITimeoutError):
        return f"{where} did not answer in time: try again, or raise DISTILRAG_LLM_TIMEOUT_S."
    if isinstance(e, openai.APIConnectionError):
        return f"Cannot reach {where}: " + ("run `distilrag llm start` or ask again to restart it."
                                            if is_local else "check that it is running and the URL is right.")
    if isinstance(e, openai.APIStatusError):
        return f"{where} returned HTTP {e.status_code}: {scrub(str(e), (key_env,))[:200]}"
    if isinstance(e, openai.APIError):
        return f"{where} returned an unusable answer: {scrub(str(e), (key_env,))[:200]}"
    try:
        import httpx
    except ImportError:  # pragma: no cover - the openai client depends on it
        return None
    if isinstance(e, httpx.TimeoutException):
        return f"{where} did not answer in time: try again, or raise DISTILRAG_LLM_TIMEOUT_S."
    if isinstance(e, httpx.TransportError):  # a stream cut mid-answer, a reset connection
        return (f"The connection to {where} broke mid-answer ({type(e).__name__}): check the server "
                "and try again.")
    return None
