"""Conversations and settings that outlive a page reload: kept in the data dir, not the browser.

    <distilrag home>/chats/<chat id>.json     {"id", "title", "created", "updated", "turns": [...]}
    <distilrag home>/app_settings.json        the sidebar's last choices (retriever, top-k, ...)

A turn is the chat's plain dict (question, corpus, results with answer, sources, citations,
timings). The page keeps its chat id in the URL (?chat=<id>), so a reload, a bookmark or a second
tab reopens the same conversation. Files are written atomically; a damaged one is skipped with
its name, never fatal. No Streamlit import here.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

SETTING_KEYS = ("retriever", "top_k", "rerank", "compare", "compare_left", "compare_right")
_ID = re.compile(r"^[0-9a-f]{12}$")


def chats_dir() -> Path:
    from rag.settings import home

    return home() / "chats"


def new_chat_id() -> str:
    return uuid.uuid4().hex[:12]


def valid_id(chat_id: str | None) -> bool:
    return bool(chat_id) and bool(_ID.match(chat_id))  # a URL parameter never becomes a path


def save_chat(chat_id: str, turns: list[dict]) -> None:
    from rag.records import _atomic_text

    if not valid_id(chat_id) or not turns:
        return
    path = chats_dir() / f"{chat_id}.json"
    old = load_chat_record(chat_id) or {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    rec = {"id": chat_id, "title": turns[0]["question"][:80], "created": old.get("created", now),
           "updated": now, "turns": turns}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(path, json.dumps(rec, ensure_ascii=False))


def load_chat_record(chat_id: str) -> dict | None:
    if not valid_id(chat_id):
        return None
    try:
        rec = json.loads((chats_dir() / f"{chat_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("turns"), list) else None


def load_turns(chat_id: str) -> list[dict]:
    rec = load_chat_record(chat_id)
    return rec["turns"] if rec else []


def list_chats(limit: int = 20) -> list[dict]:
    """The most recently updated conversations: [{id, title, updated, n}] (damaged files skipped)."""
    out = []
    for path in chats_dir().glob("*.json") if chats_dir().is_dir() else []:
        rec = load_chat_record(path.stem)
        if rec:
            out.append({"id": rec["id"], "title": rec.get("title", ""), "updated": rec.get("updated", ""),
                        "n": len(rec["turns"])})
    return sorted(out, key=lambda c: c["updated"], reverse=True)[:limit]


def settings_path() -> Path:
    from rag.settings import home

    return home() / "app_settings.json"


def load_settings() -> dict:
    try:
        d = json.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in d.items() if k in SETTING_KEYS} if isinstance(d, dict) else {}


def save_settings(values: dict) -> None:
    from rag.records import _atomic_text

    values = {k: v for k, v in values.items() if k in SETTING_KEYS}
    if values != load_settings():
        settings_path().parent.mkdir(parents=True, exist_ok=True)
        _atomic_text(settings_path(), json.dumps(values, sort_keys=True))
