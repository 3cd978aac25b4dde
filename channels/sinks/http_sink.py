"""A real HTTP server on 127.0.0.1 that records requests and answers as a test scripts
it; `LocalHttpServer` is the base every provider stand-in of the tests builds on."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs


from .common import LOCALHOST, Collector


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)


Answer = tuple[int, dict[str, str], bytes | None]


@dataclass
class _Script:
    answers: deque[Answer]
    forever: bool


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def process_request(self, request, client_address) -> None:
        # Called once per accepted connection, on the serving thread.
        self.connections += 1
        super().process_request(request, client_address)


class LocalHttpServer:
    """A threaded HTTP server on its own thread: `start`/`stop` or a `with` block, the
    port it got (0 asks the system for a free one) and the TCP connections it accepted
    (how a test sees keep-alive)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = LOCALHOST, port: int = 0) -> None:
        self._server = _CountingServer((host, port), handler)
        self._thread: threading.Thread | None = None
        self.host = host

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]


class HttpSink(LocalHttpServer):
    """A real HTTP server on 127.0.0.1 that records requests and answers as told.

    `respond("/sms/", [503, 503])` answers the next two requests under /sms/ with
    503, then 200. `forever=True` repeats the last answer. An answer is a status,
    (status, headers) or (status, headers, body), e.g. (429, {"Retry-After": "7"}).
    """

    def __init__(self, host: str = LOCALHOST, port: int = 0, *, record: bool = True) -> None:
        self._requests = Collector()
        self._scripts: dict[str, _Script] = {}
        self._scripts_lock = threading.Lock()
        self._record = record
        # Called with the path of each request before it is answered: a test's slow
        # provider (move a fake clock) or an outage that starts mid-send.
        self.before_answer: Callable[[str], None] | None = None
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                sink._requests.add(sink._describe(self, body) if sink._record else None)
                if sink.before_answer is not None:
                    sink.before_answer(self.path)
                status, headers, payload = sink._next_answer(self.path)
                if payload is None:
                    payload = b'{"ok": true}' if 200 <= status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, host, port)

    @property
    def address(self) -> str:
        """host:port, for Apprise templates such as f"json://{sink.address}/sms/{{phone}}"."""
        return f"{self.host}:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self._requests.snapshot()

    @property
    def count(self) -> int:
        return len(self._requests.snapshot())

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until `count` requests arrived; False on timeout."""
        return self._requests.wait_for(count, timeout)

    def respond(
        self,
        path_prefix: str,
        answers: list[int | tuple[int, dict[str, str]] | Answer],
        *,
        forever: bool = False,
    ) -> None:
        """Script the next answers for requests whose path starts with `path_prefix`."""
        queue: deque[Answer] = deque()
        for answer in answers:
            if isinstance(answer, int):
                queue.append((answer, {}, None))
            elif len(answer) == 2:
                queue.append((answer[0], answer[1], None))
            else:
                queue.append(answer)
        with self._scripts_lock:
            self._scripts[path_prefix] = _Script(queue, forever)

    def _next_answer(self, path: str) -> Answer:
        with self._scripts_lock:
            for prefix in sorted(self._scripts, key=len, reverse=True):
                if not path.startswith(prefix):
                    continue
                script = self._scripts[prefix]
                if not script.answers:
                    break
                if script.forever and len(script.answers) == 1:
                    return script.answers[0]
                return script.answers.popleft()
        return 200, {}, None

    @staticmethod
    def _describe(handler: BaseHTTPRequestHandler, body: bytes) -> ReceivedRequest:
        content_type = handler.headers.get("Content-Type", "")
        parsed_json: Any = None
        form: dict[str, list[str]] = {}
        if "json" in content_type:
            try:
                parsed_json = json.loads(body or b"null")
            except ValueError:
                parsed_json = None
        elif "form" in content_type:
            form = parse_qs(body.decode("utf-8", "replace"))
        return ReceivedRequest(
            method=handler.command,
            path=handler.path,
            headers={k: v for k, v in handler.headers.items()},
            body=body,
            json=parsed_json,
            form=form,
        )
