"""The local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus text), ``/status`` (JSON),
and whatever ``pages`` serves (the local status page under ``/ui/``, ``edge_app.ui``).

stdlib ``http.server`` (hardened: ``httpserver.GuardedHTTPServer``) on its own thread, bound to
127.0.0.1 by default: it reveals the device's state, so exposing it on the network is an
explicit config choice, and then every request needs the bearer token (refused without one).
``/healthz`` answers 200 for ``ok`` and ``degraded`` and 503 for ``failing``, so a plain HTTP
probe restarts only what is truly broken. Every body goes through ``edge_app.redact`` (reasons
quote errors, labels and status carry names from the config), like the logs. The composition
root owns the server and calls ``close()``.
"""

from __future__ import annotations

__all__ = ["HealthServer"]

import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from edge_app.config import is_loopback
from edge_app.errors import TelemetryError
from edge_app.redact import redact
from edge_app.telemetry.health import HealthMonitor
from edge_app.telemetry.httpserver import MAX_REQUEST_BYTES, GuardedHandler, GuardedHTTPServer
from edge_app.telemetry.pages import Pages, Request, Response
from edge_app.telemetry.prometheus import CONTENT_TYPE, render
from edge_app.telemetry.registry import Registry
from edge_app.telemetry.token import BearerToken

_log = logging.getLogger(__name__)


class HealthServer:
    """Serves the three routes on ``host:port`` (port 0: any free port, see ``port``).

    ``token``: every request must carry it (401 otherwise); required when ``host`` is not
    loopback (``ValueError``). ``timeout_s``: seconds a client has to send its request, and
    again to read the answer. ``max_connections``: connections served at once. ``pages``
    answers every other path (the local status page, ``edge_app.ui``), GET and POST.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: Registry,
        health: HealthMonitor,
        status: Callable[[], dict[str, Any]],
        token: BearerToken | None = None,
        timeout_s: float = 10.0,
        max_connections: int = 8,
        pages: Pages | None = None,
    ) -> None:
        if token is None and not is_loopback(host):
            raise ValueError(f"a health endpoint on {host!r} (not loopback) needs a token")
        server = self

        class Handler(GuardedHandler):
            def do_GET(self) -> None:  # noqa: N802  # the name http.server dispatches to
                self._answer(b"")

            def do_POST(self) -> None:  # noqa: N802
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_REQUEST_BYTES:
                    self._send(Response(400, "text/plain", b"bad or too long Content-Length\n"))
                    return
                self._answer(self.rfile.read(length))

            def _answer(self, body: bytes) -> None:
                try:
                    self._send(server._route(self.command, self.path, self.headers, body))
                except Exception:  # a broken answer must not kill the server thread
                    _log.exception("health endpoint failed on %s", self.path.split("?", 1)[0])
                    self._send(Response(500, "text/plain", b"internal error\n"))

            def _send(self, answer: Response) -> None:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.send_header("Cache-Control", "no-store")
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

        self._registry = registry
        self._health = health
        self._status = status
        self._pages = pages
        self._exposed = not is_loopback(host)
        try:
            self._httpd = GuardedHTTPServer(
                (host, port),
                Handler,
                timeout_s=timeout_s,
                max_connections=max_connections,
                token=token,
            )
        except OSError as exc:
            raise TelemetryError(
                f"cannot listen on {host}:{port} for the health endpoint: {exc}; "
                "pick another health.port or stop what uses it"
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Serve on a thread (the composition root calls this)."""
        if self._exposed:
            host, port = self._httpd.server_address[:2]
            _log.warning(
                "health endpoint on %s:%d is exposed to the network (health.host is not "
                "loopback): every request needs the bearer token, others get 401",
                host,
                port,
            )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="health-http"
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port; idempotent."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def _route(self, method: str, target: str, headers: Any, body: bytes) -> Response:
        url = urlsplit(target)
        if method == "GET" and url.path in ("/healthz", "/metrics", "/status"):
            code, ctype, text = self._probe(url.path)
            return Response(code, ctype, redact(text).encode())
        if self._pages is not None:
            query = dict(parse_qsl(url.query))
            request = Request(method, url.path, query, headers, body, self._httpd.access)
            answer = self._pages.handle(request)
            if answer is not None:
                return answer
        return Response(404, "text/plain", b"not found: try /healthz, /metrics, /status or /ui/\n")

    def _probe(self, path: str) -> tuple[int, str, str]:
        if path == "/healthz":
            report = self._health.check()
            doc = {"state": report.state, "reasons": list(report.reasons)}
            code = 503 if report.state == "failing" else 200
            return code, "application/json", json.dumps(doc)
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(self._registry)
        report = self._health.check()  # /status
        doc = {**self._status(), "health": report.state, "reasons": list(report.reasons)}
        return 200, "application/json", json.dumps(doc, default=str)
