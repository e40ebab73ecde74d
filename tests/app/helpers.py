"""Helpers for driving the app with AppTest (streamlit.testing.v1)."""
from __future__ import annotations

from pathlib import Path

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")


def new_app(timeout: float = 120):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ask(at, question: str):
    at.chat_input(key="question").set_value(question).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)
