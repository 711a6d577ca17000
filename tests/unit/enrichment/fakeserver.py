"""A fake reputation service (VirusTotal-v3-like and AbuseIPDB-v2-like) on 127.0.0.1.

Started by tests on a free loopback port, in a thread; it answers from dictionaries the test
fills and records every request, so tests can count upstream calls and inspect headers.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Scripted:
    """A canned answer for one value: status, headers, body and a delay before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class FakeReputationService:
    """What the fake service knows. Fill before or during a test.

    Attributes:
        api_key: The only key accepted (others get 401).
        vt: value -> VirusTotal ``attributes`` object.
        abuse: address -> AbuseIPDB ``data`` object.
        scripted: value -> a canned answer that wins over the above.
        requests: (path, headers) of every request, in order.
    """

    api_key: str
    vt: dict[str, dict[str, Any]] = field(default_factory=dict)
    abuse: dict[str, dict[str, Any]] = field(default_factory=dict)
    scripted: dict[str, Scripted] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, fragment: str = "") -> int:
        with self.lock:
            return sum(1 for path, _ in self.requests if fragment in path)

    def answer(self, path: str, headers: dict[str, str]) -> Scripted:
        with self.lock:
            self.requests.append((path, headers))
        parts = urlsplit(path)
        segments = parts.path.strip("/").split("/")
        if parts.path == "/api/v2/check":
            value = parse_qs(parts.query).get("ipAddress", [""])[0]
            key = headers.get("key")
            record = self.abuse.get(value)
            wrap = "data"
        elif len(segments) == 4 and segments[:2] == ["api", "v3"]:
            value = segments[3]
            if segments[2] == "urls":
                value = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            key = headers.get("x-apikey")
            attributes = self.vt.get(value)
            record = None if attributes is None else {"attributes": attributes, "id": value}
            wrap = "data"
        else:
            return Scripted(404, body={"error": {"code": "NotFoundError"}})
        if value in self.scripted:
            return self.scripted[value]
        if key != self.api_key:
            return Scripted(401, body={"error": {"code": "WrongCredentialsError"}})
        if record is None:
            return Scripted(404, body={"error": {"code": "NotFoundError"}})
        return Scripted(200, body={wrap: record})


def _handler(service: FakeReputationService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            scripted = service.answer(self.path, headers)
            if scripted.delay:
                time.sleep(scripted.delay)
            payload = json.dumps(scripted.body).encode() if scripted.body is not None else b""
            try:
                self.send_response(scripted.status)
                for name, value in scripted.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections of a concurrent batch (the client then
    # retries after a second, which looks like a slow service).
    request_queue_size = 128
    daemon_threads = True


@contextmanager
def serve(service: FakeReputationService) -> Iterator[str]:
    """Run ``service`` on a free port of 127.0.0.1; yield its base URL."""
    server = _Server(("127.0.0.1", 0), _handler(service))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
