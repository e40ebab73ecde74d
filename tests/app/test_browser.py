"""End to end in a real browser: `distilrag app` on the shipped corpus with the real local LLM,
driven by Debian chromium through Playwright. A screenshot lands in test-artifacts/.

Needs chromium (`apt-get install -y chromium`) and the `playwright` Python package (the dev
extra); the embedded LLM is fetched and verified on first use. About a minute on 2 cores with
nothing else running. BM25 is picked in the sidebar so a fresh data dir does not first embed the
whole corpus (the dense path is covered by the AppTest tests).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
QUESTION = "Where did Super Bowl 50 take place?"

pytestmark = [pytest.mark.llm, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the app did not answer on port {port} within {timeout:.0f} s")


@contextmanager
def launch_app(tmp_path, corpus: str = "squad_dev"):
    """`distilrag app` in its own process group on a free loopback port; stopped with its children.
    Yields (url, the app's data dir)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    home = tmp_path / "home"
    env = {**os.environ, "DISTILRAG_HOME": str(home), "PYTHONUNBUFFERED": "1",
           # A shell as users have it: `PORT=8599 bash scripts/run_app.sh` exports the app's own port,
           # and other tools leave HOST/API_KEY/CONFIG_FILE behind. The embedded LLM server reads
           # all of them over its arguments unless it is started with a clean environment.
           "PORT": str(port), "HOST": "0.0.0.0", "API_KEY": "x", "CONFIG_FILE": str(tmp_path / "nope.json")}
    for var in ("DISTILRAG_DISTILLED", "DISTILRAG_RANKER", "DISTILRAG_LLM_ENDPOINT"):
        env.pop(var, None)
    log = open(ARTIFACTS / f"app_browser_test-{Path(corpus).name}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", str(port), "--corpus", corpus],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(port, proc, timeout=90)
        yield f"http://127.0.0.1:{port}", home
    finally:
        # The group holds the launcher, Streamlit and the LLM server the app started.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextmanager
def chat_page(pw, url: str, screenshot: str):
    """Chromium on `url` until the chat input shows: yields (page, chat box); on the way out the
    whole page is saved to test-artifacts/<screenshot> and the browser closed."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url, wait_until="domcontentloaded")
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for(timeout=60_000)
        yield page, box
    finally:
        page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
        browser.close()


@pytest.fixture
def running_app(tmp_path):
    with launch_app(tmp_path) as (url, _):
        yield url


def test_question_in_browser_gets_streamed_cited_answer(running_app):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw, chat_page(pw, running_app, "app_chat.png") as (page, box):
        page.get_by_role("radiogroup", name="Retriever").get_by_text("bm25", exact=True).click()
        page.wait_for_timeout(500)  # let the rerun for the new retriever settle
        box.fill(QUESTION)
        box.press("Enter")
        # Sources first: the retrieved passages are on the page before the LLM's first token.
        page.get_by_test_id("stExpander").first.wait_for(timeout=240_000)
        assert "▌" not in page.inner_text("body"), "the answer streamed before the sources showed"
        # Streaming: the answer grows behind a cursor before the final rendering replaces it.
        page.wait_for_function("document.body.innerText.includes('▌')", timeout=240_000, polling=100)
        cited_label = page.locator("summary").filter(has_text=re.compile(r"cited\s*$"))
        cited = page.get_by_test_id("stExpander").filter(has=cited_label).first
        cited.wait_for(timeout=240_000)
        answer = page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stMarkdown").first.inner_text()
        (ARTIFACTS / "app_chat_answer.txt").write_text(answer + "\n")
        assert answer.strip() and "error" not in answer.lower(), answer
        assert "Levi" in answer, answer  # the right answer, from the shipped corpus
        assert "Super_Bowl_50#" in cited.inner_text()  # the cited passage of the shipped corpus
        # expanded after the final rendering: its text is on the page
        expect(cited).to_contain_text("cited in the answer", timeout=60_000)
        assert page.get_by_test_id("stException").count() == 0
        # Let the run finish (passage text, feedback, sidebar status) before the screenshot.
        page.get_by_test_id("stStatusWidgetRunningIcon").wait_for(state="detached", timeout=60_000)
        page.get_by_test_id("stFeedback").first.wait_for(timeout=60_000)
        # Each [n] of the answer links to its passage: following it lands on that passage,
        # visible, outlined (:target), with the sentence that holds the answer marked.
        link = page.locator("a.distilrag-cite").first
        target = link.get_attribute("href").lstrip("#")
        link.click()
        passage = page.locator(f"[id='{target}']")
        expect(passage).to_be_visible()
        assert page.evaluate("location.hash") == f"#{target}"
        assert passage.evaluate("el => el.matches(':target')")
        assert "Levi" in passage.locator("mark").inner_text()
