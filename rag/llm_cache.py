"""One persistent, content-addressed cache for every LLM request (answers, rankings, scores).

Key = sha256 of canonical JSON of (model id, prompt id, prompt version, messages/input, params):
change any of them and the call is made again; change none and it is never paid twice.
SQLite in WAL mode commits each entry on its own, so `kill -9` loses only the calls in flight.

What was paid for is never thrown away silently. A cache file sqlite cannot read is moved aside
(`<file>.corrupt-<time>`), every entry still readable is copied into a fresh cache and a warning
says how many; an empty (0-byte) file is a fresh cache only if it never held an entry (a marker
file `<file>.written` remembers that it did), else it stops with a UserError saying what to do.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rag.errors import UserError
from rag.settings import home


class LLMCacheError(UserError, RuntimeError):
    pass


def cache_key(model: str, prompt_id: str, prompt_version: int, messages: Any, params: dict) -> str:
    blob = json.dumps({"model": model, "prompt_id": prompt_id, "prompt_version": prompt_version,
                       "messages": messages, "params": params},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("SELECT key FROM llm_cache LIMIT 1").fetchall()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _salvage(src: Path, db: sqlite3.Connection) -> int:
    """Copy every row still readable from the damaged database at `src` into `db`."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(dir=src.parent) as tmp:
        copy = Path(tmp) / "salvage.sqlite"
        shutil.copyfile(src, copy)
        wal = src.with_name(src.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        _fit_page_count(copy)
        old, n = sqlite3.connect(str(copy)), 0
        try:
            for key, value in old.execute("SELECT key, value FROM llm_cache"):
                try:
                    json.loads(value)
                except (TypeError, ValueError):
                    continue
                db.execute("INSERT OR REPLACE INTO llm_cache (key, value) VALUES (?, ?)", (key, value))
                n += 1
        except sqlite3.DatabaseError:
            pass  # the rest is unreadable (or it never was a database): keep what came out before
        finally:
            old.close()
        return n


def _fit_page_count(path: Path) -> None:
    """A truncated file still claims its old page count, and sqlite then refuses every page:
    write the count of pages really there into the header so the surviving rows read."""
    import struct

    with open(path, "r+b") as f:
        head = f.read(100)
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            return
        page = struct.unpack(">H", head[16:18])[0]
        page = 65536 if page == 1 else page
        pages = path.stat().st_size // page if page else 0
        if pages and struct.unpack(">I", head[28:32])[0] > pages:
            f.seek(28)
            f.write(struct.pack(">I", pages))


class LLMCache:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else home() / "llm_cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._marker = self.path.with_name(self.path.name + ".written")
        self._lock = threading.Lock()
        self._written = self._marker.exists()
        self._check_empty_file()
        try:
            self._db = _connect(self.path)
        except sqlite3.DatabaseError as e:
            self._db = self._recover(e)
        self.hits = self.misses = 0
        if not self._written and self._run(lambda db: db.execute("SELECT 1 FROM llm_cache LIMIT 1").fetchone()):
            self._mark_written()  # a cache filled before the marker existed

    def _check_empty_file(self) -> None:
        if not self.path.exists():
            self._forget_written()  # deleted on purpose (or never made): a fresh cache
            return
        if self.path.stat().st_size > 0 or self._wal_has_data():
            return
        if self._written:
            raise LLMCacheError(
                f"The LLM cache {self.path} is empty (0 bytes) but held answers before, so it was "
                f"truncated: restore it from a backup, or delete it and {self._marker.name} to start "
                "a fresh cache (every call it held is then paid again).")
        print(f"note: the LLM cache {self.path} is an empty file that never held an entry; "
              "using it as a fresh cache.", file=sys.stderr)

    def _wal_has_data(self) -> bool:
        wal = self.path.with_name(self.path.name + "-wal")
        return wal.exists() and wal.stat().st_size > 0

    def _forget_written(self) -> None:
        self._marker.unlink(missing_ok=True)
        self._written = False

    def _recover(self, e: BaseException) -> sqlite3.Connection:
        """Move the damaged file aside, start a fresh cache with every entry still readable."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            f = self.path.with_name(self.path.name + suffix)
            if f.exists():
                f.rename(aside.with_name(aside.name + suffix))
        try:
            db = _connect(self.path)
        except sqlite3.DatabaseError as e2:
            raise LLMCacheError(f"Cannot create a fresh LLM cache at {self.path} ({e2}): check the "
                                "disk and its permissions.") from None
        db.execute("BEGIN")
        saved = _salvage(aside, db)
        db.execute("COMMIT")
        print(f"warning: the LLM cache {self.path} is damaged ({e}); moved it to {aside.name} and "
              f"kept the {saved} entries still readable in a fresh cache. Calls that were in it "
              "and are not among them are paid again.", file=sys.stderr)
        return db

    def _run(self, fn):
        """fn(db) under the lock; a database found damaged mid-run is recovered once and fn retried."""
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.DatabaseError as e:
                if isinstance(e, sqlite3.OperationalError) and "malformed" not in str(e):
                    raise  # locked, disk full, read-only: not damage, and nothing to move aside
                self._db.close()
                self._db = self._recover(e)
                return fn(self._db)

    def _mark_written(self) -> None:
        if not self._written:
            self._marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
            self._written = True

    def get(self, key: str) -> Any | None:
        row = self._run(lambda db: db.execute("SELECT value FROM llm_cache WHERE key=?", (key,)).fetchone())
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO llm_cache (key, value) VALUES (?, ?)",
                                        (key, json.dumps(value, ensure_ascii=False))))
        self._mark_written()

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items]

        def write(db):
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO llm_cache (key, value) VALUES (?, ?)", rows)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        self._run(write)
        self._mark_written()

    def __len__(self) -> int:
        return self._run(lambda db: db.execute("SELECT COUNT(*) FROM llm_cache").fetchone()[0])

    def close(self) -> None:
        self._db.close()
