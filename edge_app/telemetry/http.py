"""The local HTTP endpoint: ``/healthz``, ``/metrics`` (Prometheus text), ``/status`` (JSON).

stdlib ``http.server`` on its own thread, bound to 127.0.0.1 by default: it reveals the
device's state, so exposing it on the network is an explicit config choice. ``/healthz``
answers 200 for ``ok`` and ``degraded`` and 503 for ``failing``, so a plain HTTP probe restarts
only what is truly broken. Every body goes through ``edge_app.redact`` (reasons quote errors,
labels and status carry names from the config), like the logs. The composition root owns the
server and calls ``close()``.
"""

from __future__ import annotations

__all__ = ["HealthServer"]

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_app.errors import TelemetryError
from edge_app.redact import redact
from edge_app.telemetry.health import HealthMonitor
from edge_app.telemetry.prometheus import CONTENT_TYPE, render
from edge_app.telemetry.registry import Registry

_log = logging.getLogger(__name__)


class HealthServer:
    """Serves the three routes on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: Registry,
        health: HealthMonitor,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
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

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would flood the log

        self._registry = registry
        self._health = health
        self._status = status
        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise TelemetryError(
                f"cannot listen on {host}:{port} for the health endpoint: {exc}; "
                "pick another health.port or stop what uses it"
            ) from exc
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        """Serve on a thread (the composition root calls this)."""
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
