"""A local HTTP server that speaks whatever a test scripts: the only "internet" provider tests see.

    with FakeServer() as srv:
        srv.route("POST", "/v1/chat/completions", [Reply(429, headers={"Retry-After": "0"}), Reply(200, json={...})])
        ... srv.url("/v1") ...
        assert srv.requests[0].headers["authorization"] == "Bearer k"

Replies for a route are served in order; the last one repeats. ``delay`` sleeps before answering
(for timeouts); ``body`` may be bytes (malformed JSON, audio); ``json`` is encoded for you.

A reply may also be a function of the request (``Seen -> Reply``), and ``srv.fallback`` answers
what no route names: the stateful platform fakes (``stages.tests.fakeplatforms``) are built on
those two.
"""

from __future__ import annotations

import json as jsonlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body or b"null")


class FakeServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[Seen] = []
        # answers requests no route names (None: 404); called with the server's lock held
        self.fallback: Callable[[Seen], Reply | None] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                return None

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    seen = Seen(
                        self.command, parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                    server.requests.append(seen)
                    replies = server.routes.get((self.command, parts.path)) or server.routes.get(("*", parts.path))
                    reply = None
                    if replies:
                        reply = replies.pop(0) if len(replies) > 1 else replies[0]
                    elif server.fallback is not None:
                        reply = server.fallback(seen)
                    if callable(reply):
                        reply = reply(seen)
                    if reply is None:
                        reply = Reply(404, json={"error": f"no route {self.command} {parts.path}"})
                if reply.delay:
                    time.sleep(reply.delay)
                data = jsonlib.dumps(reply.json).encode() if reply.json is not None else reply.body
                try:
                    self.send_response(reply.status)
                    headers = {
                        "Content-Type": "application/json" if reply.json is not None else "application/octet-stream",
                        **reply.headers,
                    }
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, method: str, path: str, replies: list[Reply] | Reply | Callable[[Seen], Reply]) -> None:
        self.routes[(method, path)] = list(replies) if isinstance(replies, list) else [replies]

    def url(self, path: str = "") -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
