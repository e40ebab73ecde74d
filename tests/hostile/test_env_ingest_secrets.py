"""Hostile environments, hostile folders, echoed keys: what the tool must never do with them.

Each row is one thing a user's machine may hand us; each test asserts the outcome the user needs
(the server ignores the shell's settings, nothing outside the folder is read, no key is shown).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Variables llama-cpp-python's server reads over its own arguments (settings field names).
HOSTILE_ENV = {"PORT": "8501", "HOST": "0.0.0.0", "API_KEY": "x", "CONFIG_FILE": "/nonexistent.json",
               "MODEL": "/etc/passwd", "N_CTX": "8", "N_THREADS": "64", "SSL_KEYFILE": "/nonexistent"}


def test_server_environment_drops_every_server_setting(monkeypatch):
    from rag.llm import server_env

    for k, v in HOSTILE_ENV.items():
        monkeypatch.setenv(k, v)
        monkeypatch.setenv(k.lower(), v)  # pydantic settings match names case-insensitively
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-travel-0123")
    env = server_env()
    assert not {k.upper() for k in env} & set(HOSTILE_ENV)
    assert "OPENAI_API_KEY" not in env
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize("name,setup,reason", [
    ("leak.txt", lambda c, out: (c / "leak.txt").symlink_to(out / "secret.txt"), "symbolic link"),
    ("linked/", lambda c, out: (c / "linked").symlink_to(out, target_is_directory=True), "symbolic link"),
    (".hidden/", lambda c, out: ((c / ".hidden").mkdir(), (c / ".hidden" / "h.txt").write_text("secret hidden")),
     "hidden folder"),
    (".notes.txt", lambda c, out: (c / ".notes.txt").write_text("secret dotfile"), "hidden file"),
])
def test_folder_ingest_never_leaves_the_folder(tmp_path, name, setup, reason):
    from rag.corpus import load_corpus

    c, out = tmp_path / "c", tmp_path / "outside"
    c.mkdir(), out.mkdir()
    (c / "good.txt").write_text("Good text about the harbour.")
    (out / "secret.txt").write_text("secret outside the folder")
    setup(c, out)
    corpus = load_corpus(c)
    assert [p.source for p in corpus.passages] == ["good.txt"]
    assert not any("secret" in p.text for p in corpus.passages)
    assert (name, next(r for n, r in corpus.skipped if n == name)) and reason in dict(corpus.skipped)[name]


def test_large_file_is_chunked_not_lost(tmp_path):
    """A 25 MB plain-text file once made the splitter time out and lost the whole folder."""
    from rag.corpus import load_corpus

    c = tmp_path / "c"
    c.mkdir()
    (c / "small.txt").write_text("The lighthouse keeper lit the lamp at dusk.")
    para = ("The quick brown fox jumps over the lazy dog near the river bank. " * 40 + "\n\n")
    (c / "big.txt").write_text(para * (25_000_000 // len(para)))
    corpus = load_corpus(c)
    sources = {p.source for p in corpus.passages}
    assert sources == {"small.txt", "big.txt"}, corpus.skipped
    assert sum(p.source == "big.txt" for p in corpus.passages) > 1000


@pytest.mark.parametrize("text", [
    "Error code: 401 - {'error': {'message': 'Incorrect API key provided: sk-proj-AbCdEf0123456789xyz'}}",
    "Authorization: Bearer abcdefghijklmnop0123 rejected",
    'upstream said {"api_key": "zz-9876543210abcdef"}',
])
def test_scrub_removes_echoed_keys(text, monkeypatch):
    from rag.errors import scrub

    out = scrub(text)
    for secret in ("sk-proj-AbCdEf0123456789xyz", "abcdefghijklmnop0123", "zz-9876543210abcdef"):
        assert secret not in out


def test_scrub_removes_the_configured_key_whatever_its_shape(monkeypatch):
    from rag.errors import scrub

    monkeypatch.setenv("DISTILRAG_LLM_API_KEY_ENV", "CORP_LLM_CRED")
    monkeypatch.setenv("CORP_LLM_CRED", "plainvalue42")
    assert "plainvalue42" not in scrub("the server rejected plainvalue42 for model m")


def _cli(*args, env_extra=None, cwd=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=300)


def test_cli_bad_corpus_is_one_line_exit_2_and_debug_shows_traceback(tmp_path):
    r = _cli("index", "--corpus", str(tmp_path / "missing"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _cli("index", "--corpus", str(tmp_path / "missing"), "--debug")
    assert r.returncode != 0 and "Traceback" in r.stderr
