"""One persistent, content-addressed cache for every LLM request (answers, rankings, scores).

Key = sha256 of canonical JSON of (model id, prompt id, prompt version, messages/input, params):
change any of them and the call is made again; change none and it is never paid twice.
SQLite in WAL mode commits each entry on its own, so `kill -9` loses only the calls in flight.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from rag.settings import home


def cache_key(model: str, prompt_id: str, prompt_version: int, messages: Any, params: dict) -> str:
    blob = json.dumps({"model": model, "prompt_id": prompt_id, "prompt_version": prompt_version,
                       "messages": messages, "params": params},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class LLMCache:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else home() / "llm_cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.hits = self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM llm_cache WHERE key=?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO llm_cache (key, value) VALUES (?, ?)",
                             (key, json.dumps(value, ensure_ascii=False)))

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO llm_cache (key, value) VALUES (?, ?)",
                                 [(k, json.dumps(v, ensure_ascii=False)) for k, v in items])
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0]

    def close(self) -> None:
        self._db.close()
