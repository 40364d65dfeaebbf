"""The health endpoint's bodies go through the redaction: reasons, status and metric labels."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.telemetry import HealthMonitor
from edge_app.telemetry.http import HealthServer
from edge_app.telemetry.registry import Registry

PASSWORD = "pw-3c9e71"
TOKEN = "tok-c0ffee"
SECRET_URL = f"rtsp://admin:{PASSWORD}@cam:554/live?token={TOKEN}"
SHOWN_URL = "rtsp://***@cam:554/live?token=***"


def broken_disk(path: Path) -> tuple[int, int, int]:
    raise OSError(f"stale NFS handle for {SECRET_URL}")


@pytest.fixture
def server() -> Iterator[HealthServer]:
    registry = Registry({"device": "cam-1"})
    registry.counter("FramesCaptured", "Count", "Frames read", camera=SECRET_URL).inc()
    health = HealthMonitor(
        clock=FakeClock(),
        cameras=dict,
        outbox=lambda: None,
        outbox_max_bytes=0,
        connected=None,
        disk_path=Path("/"),
        disk_usage=broken_disk,
    )
    http = HealthServer(
        "127.0.0.1", 0, registry=registry, health=health, status=lambda: {"source": SECRET_URL}
    )
    http.start()
    yield http
    http.close()


def get(server: HealthServer, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as exc:  # /healthz answers 503 when failing
        return str(exc.read().decode())


def test_every_body_is_redacted(server: HealthServer) -> None:
    bodies = {path: get(server, path) for path in ("/healthz", "/status", "/metrics")}
    for path, body in bodies.items():
        assert PASSWORD not in body, path
        assert TOKEN not in body, path
    assert json.loads(bodies["/status"])["source"] == SHOWN_URL
    reasons = json.loads(bodies["/healthz"])["reasons"]
    assert reasons == [f"disk of / unreadable: stale NFS handle for {SHOWN_URL}"]
    assert f'camera="{SHOWN_URL}"' in bodies["/metrics"]
