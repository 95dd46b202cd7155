"""A stand-in for an OpenAI-compatible chat completions server, for the judges' tests: a protocol stand-in, not a
model. It answers deterministically from the prompt: a score of 0.1 when the judged answer apologises ("sorry"),
0.9 otherwise; an unreadable reply when the prompt holds "GARBAGE"; and the status codes queued in ``fail_next``
first (with ``Retry-After: 0``). ``usage``: the prompt's words and 7 completion tokens."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StandIn(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.calls = 0  # requests answered 200
        self.seen: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:  # the http.server protocol names it
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.seen.append({"body": body, "auth": self.headers.get("Authorization")})
            failure = self.server.fail_next.pop(0) if self.server.fail_next else None
            if failure is None and self.path == "/v1/chat/completions":
                self.server.calls += 1
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": "not found"})
        elif failure is not None:
            self._send(failure, {"error": {"message": f"stand-in {failure}"}}, {"Retry-After": "0"})
        else:
            prompt = body["messages"][-1]["content"]
            if "GARBAGE" in prompt:
                text = "I cannot rate this."
            else:
                score = 0.1 if "sorry" in prompt.lower() else 0.9
                text = json.dumps({"score": score, "reason": "apologises" if score < 0.5 else "answers"})
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 7}})  # fmt: skip

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
