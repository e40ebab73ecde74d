"""A fake OpenAI-compatible endpoint on 127.0.0.1 that misbehaves on demand (tests only).

    with fake_endpoint("401") as ep:          # ep.url = "http://127.0.0.1:<port>/v1"
        ... point the product at ep.url ...
        assert ep.requests                    # what it was sent (path, headers, body)

Modes (ep.mode can be changed while it runs):
  ok          a chat completion (streamed when asked) answering `ep.answer`
  401         "Incorrect API key provided: <the key it was sent>", as OpenAI echoes it
  429         rate limited, with Retry-After: 0 (so a client's retries are quick)
  500         a server error with a JSON body
  timeout     waits `ep.delay` seconds before answering (longer than a client's timeout)
  truncated   a Content-Length longer than the body, then the connection is closed
  nonjson     200 with an HTML body
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "401", "429", "500", "timeout", "truncated", "nonjson")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # a client that gave up (timeout) is expected
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, obj: dict, **kw) -> None:
        self._send(status, json.dumps(obj).encode(), **kw)

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    def do_POST(self) -> None:
        ep = self.server.endpoint
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        ep.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        key = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        mode = ep.mode
        if mode == "401":
            self._json(401, {"error": {"message": f"Incorrect API key provided: {key}. You can find your "
                                                  "API key at https://platform.openai.com/account/api-keys.",
                                       "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif mode == "429":
            self._json(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                       headers={"Retry-After": "0"})
        elif mode == "500":
            self._json(500, {"error": {"message": "The server had an error", "type": "server_error"}})
        elif mode == "truncated":
            self._send(200, b'{"id": "x", "choices": [{"mess', length=4096)
            self.close_connection = True
        elif mode == "nonjson":
            self._send(200, b"<html><body>Bad gateway</body></html>", ctype="text/html")
        else:
            if mode == "timeout":
                time.sleep(ep.delay)
            self._answer(body)

    def _answer(self, body: dict) -> None:
        text = self.server.endpoint.answer
        if not body.get("stream"):
            self._json(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": body.get("model", ""),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            return
        chunks = [{"role": "assistant", "content": ""}] + [{"content": w} for w in text.split(" ")]
        out = b""
        for i, delta in enumerate(chunks):
            if i > 1:
                delta = {"content": " " + delta["content"]}
            out += b"data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0,
                                           "model": body.get("model", ""),
                                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}).encode() + b"\n\n"
        out += b"data: [DONE]\n\n"
        self._send(200, out, ctype="text/event-stream")


class FakeEndpoint:
    def __init__(self, mode: str = "ok", answer: str = "I don't know based on the provided documents.",
                 delay: float = 5.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.answer, self.delay = mode, answer, delay
        self.requests: list[dict] = []
        self._server = _QuietServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.endpoint = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeEndpoint":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def fake_endpoint(mode: str = "ok", **kw):
    ep = FakeEndpoint(mode, **kw).start()
    try:
        yield ep
    finally:
        ep.stop()
