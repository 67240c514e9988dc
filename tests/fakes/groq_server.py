"""A fake Groq: a real HTTP server speaking the OpenAI-compatible chat-completions protocol.

Tests point the worker at it with `GROQ_BASE_URL` and script its answers, one `Reply` per request
in order (then `default`). It records every request it receives, so tests can check what the
real `groq` SDK sent (model, response_format, the prompt) and when.

    server.script(Reply.rate_limited(retry_after=1), Reply.ok())

A 200 carries `usage` as Groq reports it (reasoning tokens under `completion_tokens_details`),
the `finish_reason` of its choice (`Reply.truncated()` says "length"), and any headers scripted,
such as Groq's `x-ratelimit-*` (`Reply.ok(headers=ratelimit_headers(...))`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_USAGE", "FakeGroq", "Received", "Reply", "good_checklist", "ratelimit_headers"]

#: What a 200 reports spending unless a reply says otherwise.
DEFAULT_USAGE: dict[str, Any] = {
    "prompt_tokens": 100,
    "completion_tokens": 200,
    "total_tokens": 300,
    "completion_tokens_details": {"reasoning_tokens": 40},
}


def ratelimit_headers(
    remaining_tokens: int, reset_tokens: str = "7.66s", remaining_requests: int = 999
) -> dict[str, str]:
    """Groq's rate-limit headers: tokens per minute, requests per day."""
    return {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-limit-tokens": "8000",
        "x-ratelimit-remaining-requests": str(remaining_requests),
        "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-reset-requests": "1m26.4s",
        "x-ratelimit-reset-tokens": reset_tokens,
    }


CATEGORIES = ["documents", "money", "health", "clothing", "toiletries", "electronics", "bookings", "transport"]


def good_checklist(items: int = 14, title: str = "Checklist from the fake model") -> dict[str, Any]:
    """A model answer that satisfies the output schema."""
    return {
        "title": title,
        "items": [
            {
                "text": f"Fake task number {n}",
                "category": CATEGORIES[n % len(CATEGORIES)],
                "priority": ["high", "medium", "low"][n % 3],
                "details": None if n % 2 else f"Details for task {n}",
                "due_days_before": n % 5 or None,
                "quantity": None,
            }
            for n in range(items)
        ],
        "warnings": ["Check visa rules for the fake destination"],
    }


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = None  # the message content for a 200; None → a good checklist
    raw_body: bytes | None = None  # send these bytes as the whole HTTP body instead
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error_code: str | None = None
    finish_reason: str = "stop"
    usage: dict[str, Any] | None = None  # None: DEFAULT_USAGE

    @classmethod
    def ok(
        cls,
        answer: dict[str, Any] | None = None,
        delay: float = 0.0,
        usage: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return cls(content=json.dumps(answer or good_checklist()), delay=delay, usage=usage, headers=headers or {})

    @classmethod
    def truncated(cls) -> Reply:
        """A 200 whose answer stopped at `max_completion_tokens`: half a JSON object."""
        return cls(content=json.dumps(good_checklist())[:150], finish_reason="length")

    @classmethod
    def content_text(cls, text: str) -> Reply:
        """A 200 whose message content is `text` (e.g. not JSON)."""
        return cls(content=text)

    @classmethod
    def rate_limited(cls, retry_after: float) -> Reply:
        return cls(status=429, headers={"retry-after": f"{retry_after:g}"}, error_code="rate_limit_exceeded")

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(status=status, error_code="internal_server_error")

    @classmethod
    def unauthorized(cls) -> Reply:
        return cls(status=401, error_code="invalid_api_key")

    @classmethod
    def model_not_found(cls) -> Reply:
        return cls(status=404, error_code="model_not_found")

    @classmethod
    def malformed_body(cls) -> Reply:
        """A 200 whose HTTP body is not JSON at all."""
        return cls(raw_body=b'{"id": "chatcmpl-broken", "choices": [')

    @classmethod
    def slow(cls, seconds: float) -> Reply:
        return cls.ok(delay=seconds)


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    peer: tuple[str, int] = ("", 0)  # the client's address and port: one per connection


class _Server(ThreadingHTTPServer):
    #: The listen backlog: socketserver's 5 refuses connections when a worker's slots connect at once.
    request_queue_size = 1024


class FakeGroq:
    def __init__(self) -> None:
        self._replies: deque[Reply] = deque()
        self.default = Reply.ok()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-groq", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGroq:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.received.clear()
            self.default = Reply.ok()

    def requests_for(self, marker: str) -> list[Received]:
        """Requests whose prompt mentions `marker` (tests tag trips with a unique location)."""
        with self._lock:
            return [r for r in self.received if marker in json.dumps(r.body)]

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.received.append(received)
            return self._replies.popleft() if self._replies else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The headers and the body go out in two writes: with Nagle's algorithm the body waits
            # for the client's delayed ACK of the headers, 40 ms added to every answer.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `received` instead."""

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if self.path != "/openai/v1/chat/completions":
                    self._send(404, {"error": {"message": "unknown path", "code": "not_found"}})
                    return
                body = json.loads(raw)
                peer = (str(self.client_address[0]), int(self.client_address[1]))
                reply = fake._next(Received(time.time(), self.path, dict(self.headers.items()), body, peer))
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw_body is not None:
                    self._send_bytes(reply.status, reply.raw_body, reply.headers)
                elif reply.status != 200:
                    error = {"message": f"fake error {reply.status}", "type": "fake", "code": reply.error_code}
                    self._send(reply.status, {"error": error}, reply.headers)
                else:
                    completion = _completion(body.get("model", "unknown"), reply)
                    self._send(200, completion, reply.headers)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send_bytes(status, json.dumps(payload).encode(), headers or {})

            def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        return Handler


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.content or ""}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": reply.usage or DEFAULT_USAGE,
    }
