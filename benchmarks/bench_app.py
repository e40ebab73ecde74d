"""Benchmark the chat UI as a user meets it: launch to first usable page, and time to first token.

    python benchmarks/bench_app.py [--corpus squad_dev] [--retriever base] [--question "..."]

Drives the real app (`distilrag app`) with Debian chromium through Playwright and prints:
  launch -> usable page, cold   first server process of this run (imports, corpus, index check)
  launch -> usable page, warm   a second server process (OS file cache warm)
  new session -> usable page    another browser tab on the running server
  first token, LLM cold         Enter -> first streamed token, asked as soon as the page is usable
                                (the app starts the LLM in the background on page load)
  first token, LLM warm         a question on another article with the LLM running
  sources, cold / warm          Enter -> the retrieved passages on the page (before any token)
  first token, bare LLM         the warm question's prompt (same passages) to the embedded LLM
                                directly, app stopped: the prompt-evaluation floor; and the ratio
"Usable" means the chat input is on the page. Uses the normal app data dir (so an existing
index is reused; a missing one would be built inside the first question and inflate it).
Run it with nothing else busy on the CPU: the local LLM shares the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(corpus: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(log_path, "a")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(port), "--corpus", corpus],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    """Stop the launcher's process group: the launcher, Streamlit and any LLM server it started."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up within {timeout:.0f} s")


def _usable_page(browser, url: str, t0: float):
    """Open `url` in a new page; seconds from t0 until the chat input is shown, and the page."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url, wait_until="domcontentloaded", timeout=120_000)
    page.get_by_test_id("stChatInputTextArea").wait_for(timeout=120_000)
    return time.perf_counter() - t0, page


def _first_token(page, question: str, retriever: str) -> tuple[float, float, str]:
    """Seconds from Enter to the passages on the page and to the first streamed token; then waits
    for the answer to finish."""
    page.get_by_role("radiogroup", name="Retriever").get_by_text(retriever, exact=True).click()
    page.wait_for_timeout(500)
    n_before = page.get_by_test_id("stChatMessage").count()
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    t0 = time.perf_counter()
    box.press("Enter")
    page.wait_for_function(f"(() => {{ const m = document.querySelectorAll('[data-testid=stChatMessage]');"
                           f" return m.length >= {n_before + 2} && "
                           f"m[{n_before + 1}].querySelector('[data-testid=stExpander]') !== null; }})()",
                           timeout=600_000, polling=20)
    sources = time.perf_counter() - t0
    page.wait_for_function("document.body.innerText.includes('▌')", timeout=600_000, polling=20)
    first = time.perf_counter() - t0
    page.wait_for_function(f"document.querySelectorAll('[data-testid=stChatMessage]').length >= {n_before + 2}"
                           " && !document.body.innerText.includes('▌')", timeout=600_000, polling=200)
    caption = page.get_by_test_id("stChatMessage").nth(n_before + 1).get_by_test_id("stCaptionContainer").first
    return sources, first, caption.inner_text()


def _bare_first_token(corpus: str, retriever: str, warmup: str, question: str) -> float:
    """The same prompt (the chain's, same passages) straight to the embedded LLM, warm, no UI:
    seconds to its first streamed token, i.e. the LLM's prompt evaluation."""
    from rag.chain import build_chain
    from rag.llm import LLMConfig, llama_index_llm

    chain = build_chain(corpus, retriever, llm=llama_index_llm(LLMConfig.from_env()))
    chain.answer(warmup)
    nodes = chain.retrieve(question)
    t0, first = time.perf_counter(), []
    chain.answer(question, nodes=nodes, on_token=lambda tok: first or first.append(time.perf_counter() - t0))
    return first[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="squad_dev")
    ap.add_argument("--retriever", default="base", choices=["base", "distilled", "bm25", "hybrid"])
    ap.add_argument("--question", default="Which NFL team represented the AFC at Super Bowl 50?")
    # Another article: asking the same question twice would time llama.cpp's prompt cache instead.
    ap.add_argument("--warm-question", default="What is the Amazon rainforest also called in English?")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    a = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from rag.llm import running_server

    log_path = REPO / "test-artifacts" / "bench_app.log"
    log_path.parent.mkdir(exist_ok=True)
    llm_was_running = running_server() is not None
    figures: dict[str, float | str] = {}
    procs: list[subprocess.Popen] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for label in ("launch_to_usable_cold_s", "launch_to_usable_warm_s"):
                if procs:
                    _stop(procs[-1])  # one server at a time; the warm one stays up for what follows
                t0 = time.perf_counter()
                proc, url = _launch(a.corpus, log_path)
                procs.append(proc)
                _wait_http(url)
                figures[label.replace("usable", "http")] = time.perf_counter() - t0
                figures[label], page = _usable_page(browser, url, t0)
                page.close()
            t0 = time.perf_counter()
            figures["new_session_to_usable_s"], page = _usable_page(browser, url, t0)
            src_cold, cold, figures["app_caption_cold"] = _first_token(page, a.question, a.retriever)
            src_warm, warm, figures["app_caption_warm"] = _first_token(page, a.warm_question, a.retriever)
            figures["first_token_llm_cold_s"], figures["first_token_llm_warm_s"] = cold, warm
            figures["sources_cold_s"], figures["sources_warm_s"] = src_cold, src_warm
        finally:
            browser.close()
            for proc in procs:
                _stop(proc)
    # The bare LLM on the same prompt, with the app stopped (target: the app's warm first token
    # within 1.2x of it; the passages within 1 s of Enter).
    figures["first_token_bare_llm_s"] = _bare_first_token(a.corpus, a.retriever, a.question, a.warm_question)
    figures["first_token_app_vs_bare"] = figures["first_token_llm_warm_s"] / figures["first_token_bare_llm_s"]
    figures = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
    figures.update(retriever=a.retriever, corpus=a.corpus, llm_was_already_running=llm_was_running,
                   cpu_count=os.cpu_count() or 0)
    width = max(map(len, figures))
    for k, v in figures.items():
        print(f"{k:<{width}}  {v}")
    if llm_was_running:
        print("note: an LLM server was already running, so 'first_token_llm_cold_s' did not include its start")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
