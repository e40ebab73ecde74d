"""The one LLM client every part uses, and the embedded local llama.cpp server.

Configuration picks the endpoint: "local" (default) starts llama-cpp-python's OpenAI-compatible
server on 127.0.0.1 on a free port with the verified Qwen2.5-Coder-1.5B GGUF, health-checks it,
reuses it (within the process, and across processes through a state file) and stops it on exit
when this process started it. Any other value is an OpenAI-compatible base URL (OpenAI, vLLM,
Ollama, a llama.cpp server); its key is read from the environment variable the config names and
is never printed or written anywhere.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from rag.settings import apply_offline_env, home
from rag.errors import UserError

LOCAL_ALIAS = "qwen2.5-coder-1.5b-instruct"


@dataclass(frozen=True)
class LLMConfig:
    endpoint: str = "local"        # "local" or an OpenAI-compatible base URL ending in /v1
    model: str = ""                # model name at the endpoint; "" = the embedded model
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key (remote only)
    temperature: float = 0.0
    max_tokens: int = 384
    n_ctx: int = 4096
    n_threads: int = 0             # 0 = every core (run the LLM alone on a small machine)
    timeout_s: float = 600.0
    # Token log-probs in answers (pointwise labelling reads them). The embedded server then keeps
    # every prompt position's logits over the 152k-token vocabulary: slower prompts and more memory
    # (benchmarks/bench_llm_server.py).
    logprobs: bool = False

    @classmethod
    def from_env(cls, **overrides) -> "LLMConfig":
        env = {k: os.environ[v] for k, v in (("endpoint", "DISTILRAG_LLM_ENDPOINT"),
               ("model", "DISTILRAG_LLM_MODEL"), ("api_key_env", "DISTILRAG_LLM_API_KEY_ENV"))
               if os.environ.get(v)}
        if os.environ.get("DISTILRAG_LLM_TIMEOUT_S"):  # seconds per request (a slow remote farm, a test)
            try:
                env["timeout_s"] = float(os.environ["DISTILRAG_LLM_TIMEOUT_S"])
            except ValueError:
                raise LLMUnavailable("DISTILRAG_LLM_TIMEOUT_S must be a number of seconds, not "
                                     f"{os.environ['DISTILRAG_LLM_TIMEOUT_S']!r}.") from None
        return replace(cls(), **{**env, **overrides})

    @property
    def is_local(self) -> bool:
        return self.endpoint == "local"

    @property
    def model_name(self) -> str:
        return self.model or LOCAL_ALIAS

    def __repr__(self) -> str:  # the key never appears here: only the variable's name
        return f"LLMConfig(endpoint={self.endpoint!r}, model={self.model_name!r})"


class LLMUnavailable(UserError, RuntimeError):
    pass


def _state_file() -> Path:
    return home() / "llm_server.json"


def _log_file() -> Path:
    return home() / "logs" / "llm_server.log"


# What the server process inherits from the host. llama-cpp-python's server reads its settings from
# the environment over its own arguments (PORT, HOST, API_KEY, CONFIG_FILE, MODEL, N_CTX ... any
# field name): a shell with PORT=8501 made it fight the app for its port, HOST=0.0.0.0 would expose
# it on every interface, API_KEY=x made it answer 401. So it gets only what a process needs to run.
_SERVER_ENV_KEEP = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TMPDIR", "TZ",
                    "SYSTEMROOT", "LD_LIBRARY_PATH")


def server_env() -> dict[str, str]:
    """A clean environment for the embedded server: no setting can arrive from the host's shell."""
    env = {k: v for k, v in os.environ.items() if k in _SERVER_ENV_KEEP or k.startswith("LC_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(n: int = 6, path: Path | None = None) -> str:
    """The server log's last lines (scrubbed), for an error message that shows what went wrong."""
    from rag.errors import scrub

    try:
        lines = (path or _log_file()).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return scrub(" | ".join(line.strip() for line in lines[-n:] if line.strip()))[-800:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int, timeout: float = 1.0) -> bool:
    """Something accepts connections on the port. Not an HTTP request: the server answers one
    request at a time, so a probe of a busy server waits behind the answer in progress."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


@dataclass
class LocalServer:
    port: int
    pid: int
    owned: bool  # started by this process: stop it at exit
    logprobs: bool = False  # started with every position's logits (LLMConfig.logprobs)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        try:  # the server may exit between any two of these steps (its owner stopping it too)
            if _pid_alive(self.pid):
                os.kill(self.pid, signal.SIGTERM)
                for _ in range(50):
                    if not _pid_alive(self.pid):
                        break
                    time.sleep(0.1)
                else:
                    os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            if json.loads(_state_file().read_text()).get("pid") == self.pid:
                _state_file().unlink()
        except (OSError, ValueError):
            pass


_server: LocalServer | None = None


def running_server() -> LocalServer | None:
    """The embedded server started by this or another process, if it is alive; a busy one counts
    (an HTTP probe would wait for its answer in progress, time out, and start a second server
    that halves both on a small machine)."""
    global _server
    if _server and _pid_alive(_server.pid) and _listening(_server.port):
        return _server
    try:
        st = json.loads(_state_file().read_text())
        if _pid_alive(st["pid"]) and _listening(st["port"]):
            return LocalServer(port=st["port"], pid=st["pid"], owned=False, logprobs=st.get("logprobs", True))
    except (OSError, ValueError, KeyError):
        pass
    return None


def spawn_server(gguf, port: int, threads: int, n_ctx: int, log: Path, detach: bool = False,
                 wait_s: float = 180.0, logits: bool = False) -> subprocess.Popen:
    """`python -m llama_cpp.server` for `gguf` on 127.0.0.1:`port`, in a clean environment, its
    output appended to `log`; returns once it answers (LLMUnavailable when it exits or stays mute).
    `detach` gives it its own session: it outlives this process and its group can be killed whole.
    `logits` keeps every position's logits, which token log-probs need (echo + logprobs for query
    likelihood, top_logprobs for pointwise); the server's own default, but answers without it read
    their prompts faster in less memory (benchmarks/bench_llm_server.py)."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as e:
        raise LLMUnavailable("The embedded LLM needs `pip install 'llama-cpp-python[server]'`.") from e
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", LOCAL_ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_gpu_layers", "0",
           "--logits_all", str(logits),
           # Requests queue: by default any new request (even GET /v1/models) ends the answer
           # being streamed, which then reads as a complete, cut-short (often empty) answer.
           "--interrupt_requests", "False"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting on 127.0.0.1:{port}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=server_env(), start_new_session=detach)
    deadline = time.monotonic() + wait_s
    while not _healthy(port):
        if proc.poll() is not None:
            raise LLMUnavailable(f"The local LLM server exited with code {proc.returncode}. Its log "
                                 f"({log}) ends: {log_tail(path=log)}")
        if time.monotonic() > deadline:
            proc.kill()
            raise LLMUnavailable(f"The local LLM server did not answer within {wait_s:.0f} s (is the "
                                 f"CPU busy with another job?). Its log ({log}) ends: {log_tail(path=log)}")
        time.sleep(0.5)
    return proc


def start_local_server(cfg: LLMConfig = LLMConfig(), detach: bool = False,
                       wait_s: float = 180.0) -> LocalServer:
    """Start (or reuse) the embedded server; `detach` leaves it running after this process exits.
    A running one without log-probs is not reused when `cfg.logprobs` asks for them: this process
    then starts its own beside it (and the shared one stays the other's)."""
    global _server
    found = running_server()
    if found and (found.logprobs or not cfg.logprobs):
        return found
    from rag.models import ensure_llm

    private = found is not None  # beside a shared server without log-probs: this process's own
    detach = detach and not private
    gguf = ensure_llm()
    port = free_port()
    proc = spawn_server(gguf, port, cfg.n_threads or os.cpu_count() or 2, cfg.n_ctx, _log_file(),
                        detach, wait_s, logits=cfg.logprobs)
    server = LocalServer(port=port, pid=proc.pid, owned=not detach, logprobs=cfg.logprobs)
    from rag.records import write_json

    if not private:
        write_json(_state_file(), {"pid": proc.pid, "port": port, "model": LOCAL_ALIAS, "gguf": str(gguf),
                                   "logprobs": cfg.logprobs})
    if server.owned:
        atexit.register(server.stop)
    _server = server
    return server


def endpoint(cfg: LLMConfig) -> tuple[str, str]:
    """(base_url, api_key) for the configured endpoint, starting the local server if needed."""
    if cfg.is_local:
        return start_local_server(cfg).base_url, "sk-local"
    key = os.environ.get(cfg.api_key_env, "")
    if not key and "127.0.0.1" not in cfg.endpoint and "localhost" not in cfg.endpoint:
        raise LLMUnavailable(f"The LLM endpoint {cfg.endpoint} needs an API key in the environment "
                             f"variable {cfg.api_key_env}; set it (it is never stored).")
    return cfg.endpoint, key or "none"


def openai_client(cfg: LLMConfig | None = None, async_: bool = False):
    """An `openai` client for the configured endpoint (the local server is started on demand)."""
    apply_offline_env()
    import openai

    cfg = cfg or LLMConfig.from_env()
    base_url, key = endpoint(cfg)
    cls = openai.AsyncOpenAI if async_ else openai.OpenAI
    return cls(base_url=base_url, api_key=key, timeout=cfg.timeout_s, max_retries=3)


_reading = threading.local()  # the HTTP responses this thread's LlamaIndex LLMs have opened


def _opened(response) -> None:
    """httpx response hook: remember the response (still unread when it is a stream)."""
    open_now = [r for r in getattr(_reading, "responses", []) if not r.is_closed]
    _reading.responses = open_now + [response]


def close_open_responses() -> None:
    """Close the responses this thread is reading: an answer stopped early ends its HTTP stream now,
    and the server stops generating. Left to Python, openai's Stream (it and its generator hold
    each other) is closed only when the cycle collector finds it unreachable, which an exception
    in flight can delay past the whole answer."""
    for r in getattr(_reading, "responses", []):
        r.close()
    _reading.responses = []


def llama_index_llm(cfg: LLMConfig | None = None):
    """The same endpoint as a LlamaIndex LLM (chat API, streaming)."""
    apply_offline_env()
    import httpx
    from llama_index.llms.openai_like import OpenAILike

    cfg = cfg or LLMConfig.from_env()
    base_url, key = endpoint(cfg)
    return OpenAILike(model=cfg.model_name, api_base=base_url, api_key=key, is_chat_model=True,
                      is_function_calling_model=False, context_window=cfg.n_ctx,
                      max_tokens=cfg.max_tokens, temperature=cfg.temperature, timeout=cfg.timeout_s,
                      http_client=httpx.Client(timeout=cfg.timeout_s, event_hooks={"response": [_opened]}))
