"""The chat's controls in a real browser with the real local LLM: compare mode shows both source
lists before either answer, Stop ends the answer and the LLM's work, a reload keeps the
conversation and the settings. A three-document folder corpus, so the dense index builds in
seconds; about a minute and a half on 2 cores with nothing else running.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.app.conftest import DOCS
from tests.app.test_browser import chat_page, launch_app

pytestmark = [pytest.mark.llm, pytest.mark.browser]
QUESTION = "Which team represented the AFC at Super Bowl 50, and which the NFC?"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu_share(home: Path, seconds: float = 3.0) -> float:
    """The embedded LLM server's CPU use over `seconds` (1.0 = one core busy)."""
    pid = json.loads((home / "llm_server.json").read_text())["pid"]
    t0, c0 = time.monotonic(), _cpu_seconds(pid)
    time.sleep(seconds)
    return (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def test_compare_stop_and_reload(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    docs = tmp_path / "minidocs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    with launch_app(tmp_path, str(docs)) as (url, home), sync_playwright() as pw, \
            chat_page(pw, url, "app_compare_stop.png") as (page, box):
        page.get_by_text("Compare base vs distilled").click()
        expect(page.get_by_text("Right", exact=True)).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)  # let the rerun for compare mode settle
        box.fill(QUESTION)
        box.press("Enter")
        answer_msg = page.get_by_test_id("stChatMessage").nth(1)
        cols = answer_msg.get_by_test_id("stColumn")
        # Both sides retrieve first: both source lists are on the page before either answer is.
        cols.nth(0).get_by_test_id("stExpander").first.wait_for(timeout=240_000)
        cols.nth(1).get_by_test_id("stExpander").first.wait_for(timeout=60_000)
        assert page.get_by_test_id("stFeedback").count() == 0, "an answer finished before both sources showed"
        expect(cols.nth(1)).to_contain_text("Waiting for the base answer")
        # Stop while the left answer streams.
        page.wait_for_function("document.body.innerText.includes('▌')", timeout=240_000, polling=100)
        answer_msg.get_by_role("button", name=re.compile("Stop")).click()
        expect(cols.nth(0)).to_contain_text("Stopped: the answer is cut here.", timeout=30_000)
        expect(cols.nth(1)).to_contain_text("Stopped before the answer began.", timeout=30_000)
        page.get_by_test_id("stStatusWidgetRunningIcon").wait_for(state="detached", timeout=30_000)
        assert page.get_by_test_id("stException").count() == 0
        # The LLM request ended with the answer: the server saw the client go (its log says so
        # within seconds), the right side never asked, and the server is idle, not generating on.
        log = home / "logs" / "llm_server.log"
        deadline = time.monotonic() + 15
        while "Disconnected from client" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        assert "Disconnected from client" in text, "the LLM server never saw the stream closed after Stop"
        assert text.count("POST /v1/chat/completions") == 1, "an answer was requested after Stop"
        time.sleep(1.0)
        share = _server_cpu_share(home)
        assert share < 0.3, f"the LLM server still uses {share:.2f} cores after Stop"
        # A reload reopens the same conversation (the URL names it) with the same settings.
        page.reload(wait_until="domcontentloaded")
        page.get_by_test_id("stChatInputTextArea").wait_for(timeout=60_000)
        expect(page.get_by_test_id("stChatMessage").first).to_contain_text(QUESTION, timeout=30_000)
        expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("Stopped: the answer is cut here.")
        expect(page.get_by_text("Right", exact=True)).to_be_visible()  # compare mode is still on
