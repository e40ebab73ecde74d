"""`distilrag ask` against an endpoint that misbehaves every way the fake can: one `error:` line
that names the endpoint (or what went wrong), exit 2, no traceback, and never the key."""
from __future__ import annotations

import pytest

from tests.hostile.fake_endpoint import fake_endpoint
from rag.records import write_jsonl

KEY = "sk-proj-askHOSTILEkey9876543210zyxw"

# mode -> words the one error line must contain
MODES = {
    "401": ["refused the API key", "$ASK_KEY"],
    "429": ["rate-limiting"],
    "500": ["HTTP 500"],
    "timeout": ["did not answer in time"],
    "truncated": ["127.0.0.1"],
    "nonjson": ["127.0.0.1", "sent no answer"],
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_ask_against_a_misbehaving_endpoint(mode, tmp_path, capsys, monkeypatch):
    from app.cli import main

    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "The harbour is busy at dawn."},
                                            {"_id": "b", "text": "A glacier moves slowly."}])
    monkeypatch.setenv("ASK_KEY", KEY)
    monkeypatch.setenv("DISTILRAG_LLM_TIMEOUT_S", "2")
    with fake_endpoint(mode, delay=5) as ep:
        monkeypatch.setenv("DISTILRAG_LLM_ENDPOINT", ep.url)
        rc = main(["ask", "Is the harbour busy?", "--corpus", str(tmp_path / "corpus.jsonl"),
                   "--retriever", "bm25", "--endpoint", ep.url, "--model", "m", "--api-key-env", "ASK_KEY"])
    out, err = capsys.readouterr()
    assert KEY not in out + err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and len(lines) == 1, err
    for word in MODES[mode]:
        assert word in lines[0], lines[0]
