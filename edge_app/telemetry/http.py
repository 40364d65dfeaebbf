"""The local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus text), ``/status`` (JSON).

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

from edge_app.config import is_loopback
from edge_app.errors import TelemetryError
from edge_app.redact import redact
from edge_app.telemetry.health import HealthMonitor
from edge_app.telemetry.httpserver import GuardedHandler, GuardedHTTPServer
from edge_app.telemetry.prometheus import CONTENT_TYPE, render
from edge_app.telemetry.registry import Registry
from edge_app.telemetry.token import BearerToken

_log = logging.getLogger(__name__)


class HealthServer:
    """Serves the three routes on ``host:port`` (port 0: any free port, see ``port``).

    ``token``: every request must carry it (401 otherwise); required when ``host`` is not
    loopback (``ValueError``). ``timeout_s``: seconds a client has to send its request, and
    again to read the answer. ``max_connections``: connections served at once.
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
    ) -> None:
        if token is None and not is_loopback(host):
            raise ValueError(f"a health endpoint on {host!r} (not loopback) needs a token")
        server = self

        class Handler(GuardedHandler):
            def do_GET(self) -> None:  # noqa: N802  # the name http.server dispatches to
                try:
                    code, ctype, text = server._route(self.path.split("?", 1)[0])
                except Exception:  # a broken probe answer must not kill the server thread
                    _log.exception("health endpoint failed on %s", self.path)
                    code, ctype, text = 500, "text/plain", "internal error\n"
                body = redact(text).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._registry = registry
        self._health = health
        self._status = status
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

    def _route(self, path: str) -> tuple[int, str, str]:
        if path == "/healthz":
            report = self._health.check()
            doc = {"state": report.state, "reasons": list(report.reasons)}
            code = 503 if report.state == "failing" else 200
            return code, "application/json", json.dumps(doc)
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(self._registry)
        if path == "/status":
            report = self._health.check()
            doc = {**self._status(), "health": report.state, "reasons": list(report.reasons)}
            return 200, "application/json", json.dumps(doc, default=str)
        return 404, "text/plain", "not found: try /healthz, /metrics or /status\n"
