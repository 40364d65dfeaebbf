"""Health, metrics and the systemd watchdog of the whole app: a real clip, a real Mosquitto
behind a real TCP proxy (the outage), a detector that can be made to hang (a ``Detector``
implementation gated by an Event), and a fake disk through the ``disk_usage`` seam."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from prometheus_client.parser import text_string_to_metric_families

from edge_app.app import EdgeApp
from edge_app.config import AppConfig, parse_config
from edge_app.domain import Detections
from edge_app.outbox import OutboxReader
from edge_app.uplink import InMemoryTransport
from edge_app.vision.labels import LabelMap
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.proxy import TcpProxy
from simulator.scene import SceneTruth
from tests.app.test_app import tls
from tests.fakes import FakeDetector, RecordingSubscriber
from tests.telemetry.test_http_guard import get as get_from
from tests.telemetry.test_http_guard import lan_address


class GatedDetector(FakeDetector):
    """Detects nothing; ``detect`` blocks while ``gate`` is clear (a hung accelerator)."""

    def __init__(self) -> None:
        super().__init__(LabelMap.empty(), name="gated")
        self.gate = threading.Event()
        self.gate.set()

    def see(self, image_bgr: NDArray[np.uint8]) -> Detections:
        self.gate.wait()
        return Detections.empty()

    def close(self) -> None:
        self.gate.set()


class Disk:
    """A fake ``shutil.disk_usage``: 100 GB with ``free`` bytes free."""

    def __init__(self) -> None:
        self.free = 60 * 10**9

    def __call__(self, path: Path) -> tuple[int, int, int]:
        return (100 * 10**9, 100 * 10**9 - self.free, self.free)


def config(tmp: Path, clip: Path, port: int, pki: Pki, *, loop: bool = True) -> AppConfig:
    """The app on ``port`` of a mutual-TLS listener, with the session's client certificate."""
    return parse_config(
        {
            "device": {"thing_name": "tel-cam", "data_dir": str(tmp / "data")},
            "cameras": [
                {
                    "name": "yard",
                    "source": {"type": "file", "path": str(clip), "realtime": loop, "loop": loop},
                }
            ],
            "uplink": {
                "host": "127.0.0.1",
                "port": port,
                "tls": tls(pki),
                "reconnect": {"min_s": 0.1, "max_s": 0.3},
            },
            "metrics": {"sample_s": 0.1, "period_s": 1.0},
            "health": {
                "port": 0,
                "camera_stale_s": 1.0,
                "detector_stuck_s": 1.0,
                "uplink_down_s": 0.5,
            },
            "log_level": "warning",
        }
    )


def get(app: EdgeApp, path: str) -> tuple[int, str]:
    assert app.telemetry is not None
    assert app.telemetry.server is not None
    url = f"http://127.0.0.1:{app.telemetry.server.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def health(app: EdgeApp) -> dict[str, Any]:
    code, body = get(app, "/healthz")
    doc: dict[str, Any] = json.loads(body)
    assert code == (503 if doc["state"] == "failing" else 200)
    return doc


def until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``cond`` until true or ``timeout`` seconds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_health_metrics_and_watchdog_follow_the_world(
    tmp_path: Path, scene: tuple[Path, SceneTruth], broker: Mosquitto, pki: Pki
) -> None:
    clip, _ = scene
    detector = GatedDetector()
    disk = Disk()
    notes: list[str] = []

    def notify(state: str) -> bool:
        notes.append(state)
        return True

    emf = RecordingSubscriber(broker.host, broker.port, "edge-app/tel-cam/metrics")
    emf.start()
    try:
        with TcpProxy(free_port(), broker.host, broker.tls_port) as network:
            network.up()
            app = EdgeApp(
                config(tmp_path, clip, network.listen_port, pki),
                detector=detector,
                disk_usage=disk,
                notify=notify,
                watchdog_s=0.05,
            )
            app.start()
            try:
                assert until(lambda: health(app)["state"] == "ok" and "READY=1" in notes)
                assert until(lambda: notes.count("WATCHDOG=1") >= 2)

                # /metrics parses; frames are counted per camera
                assert until(lambda: "edge_app_frames_processed_total" in get(app, "/metrics")[1])
                families = {
                    f.name: f for f in text_string_to_metric_families(get(app, "/metrics")[1])
                }
                frames = families["edge_app_frames_processed"].samples[0]
                assert frames.labels == {"camera": "yard", "device": "tel-cam"}
                assert frames.value > 0
                assert "edge_app_uplink_connected" in families
                status = json.loads(get(app, "/status")[1])
                assert status["device"] == "tel-cam"
                assert status["health"] == "ok"

                # EMF documents reach the broker with their minute's timestamp
                assert until(lambda: len(emf.payloads("edge-app/tel-cam/metrics")) > 0)
                doc = json.loads(emf.payloads("edge-app/tel-cam/metrics")[0])
                assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EdgeApp"
                assert doc["_aws"]["Timestamp"] % 1000 == 0
                assert doc["device"] == "tel-cam"

                # broker unreachable for longer than uplink_down_s: degraded
                network.down()
                assert until(lambda: any("uplink down" in r for r in health(app)["reasons"]))
                assert health(app)["state"] == "degraded"
                network.up()
                assert until(lambda: health(app)["state"] == "ok")

                # disk nearly full: degraded
                disk.free = 10**9
                assert until(lambda: any("disk low" in r for r in health(app)["reasons"]))
                disk.free = 60 * 10**9
                assert until(lambda: health(app)["state"] == "ok")

                # the detector hangs: failing (503) and the watchdog is no longer fed
                detector.gate.clear()
                assert until(lambda: health(app)["state"] == "failing")
                assert any("detector stuck" in r for r in health(app)["reasons"])
                assert app.telemetry is not None
                assert until(
                    lambda: app.telemetry is not None and app.telemetry.watchdog.starved >= 3
                )
                fed = notes.count("WATCHDOG=1")
                assert until(
                    lambda: app.telemetry is not None and app.telemetry.watchdog.starved >= 6
                )
                assert notes.count("WATCHDOG=1") == fed
                detector.gate.set()
                assert until(lambda: notes.count("WATCHDOG=1") > fed)
            finally:
                detector.gate.set()
                app.request_stop()
                app.stop(flush_timeout_s=2.0)
    finally:
        emf.stop()


@pytest.mark.slow
def test_a_camera_that_stops_delivering_frames_is_stale(
    tmp_path: Path, scene: tuple[Path, SceneTruth], pki: Pki
) -> None:
    clip, _ = scene
    cfg = config(tmp_path, clip, free_port(), pki, loop=False)
    with EdgeApp(cfg, detector=GatedDetector(), watchdog_s=0.05, notify=lambda s: True) as app:
        app.wait()  # the clip ended: no frame will come
        assert until(lambda: any("camera yard stale" in r for r in health(app)["reasons"]))
        assert health(app)["state"] == "degraded"
        # ... and a health event was stored like any event (the uplink is down: no broker)
        assert until(lambda: health_events(cfg) != [])
    # stopping ends the open condition; both wait in the outbox for delivery
    (start, end) = health_events(cfg)
    assert (start["rule"], start["label"], start["camera"]) == ("health", "camera_stale", "yard")
    assert (start["phase"], start["severity"], end["phase"]) == ("start", "high", "end")
    assert (end["start_id"], end["end_reason"]) == (start["id"], "stopped")


@pytest.mark.slow
def test_stopping_ends_an_open_condition_before_the_last_delivery(
    tmp_path: Path, scene: tuple[Path, SceneTruth], pki: Pki
) -> None:
    """The ``stopped`` end is raised before the stop's flush, so the cloud has it at once
    (not only after the next start), and nothing of health is left in the outbox."""
    clip, _ = scene
    cfg = config(tmp_path, clip, free_port(), pki, loop=False)
    transport = InMemoryTransport()
    with EdgeApp(
        cfg, transport=transport, detector=GatedDetector(), watchdog_s=0.05, notify=lambda s: True
    ) as app:
        app.wait()  # the clip ended: the camera goes stale
        assert until(lambda: [e["phase"] for e in delivered_health(transport)] == ["start"])
    assert [(e["label"], e["phase"]) for e in delivered_health(transport)] == [
        ("camera_stale", "start"), ("camera_stale", "end"),
    ]  # fmt: skip
    assert delivered_health(transport)[-1]["end_reason"] == "stopped"
    assert health_events(cfg) == []


def delivered_health(transport: InMemoryTransport) -> list[dict[str, Any]]:
    batches = [json.loads(m.payload) for m in transport.published if m.topic.endswith("/events")]
    return [e for b in batches for e in b["events"] if e["rule"] == "health"]


def health_events(cfg: AppConfig) -> list[dict[str, Any]]:
    with OutboxReader(cfg.outbox_path) as reader:
        bodies = [json.loads(b) for b in reader.bodies()]
    return [b for b in bodies if b["rule"] == "health"]


def test_an_exposed_endpoint_serves_only_with_the_token_from_the_environment(
    tmp_path: Path,
    scene: tuple[Path, SceneTruth],
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clip, _ = scene
    token = "Fq3v9-KdLw0_xZr7TnB2yPa6sHc1MeUj"
    monkeypatch.setenv("EDGE_TEST_HEALTH_TOKEN", token)
    base = config(tmp_path, clip, free_port(), pki, loop=False)
    exposed = {"host": "0.0.0.0", "port": 0, "token_env": "EDGE_TEST_HEALTH_TOKEN"}
    cfg = parse_config({**base.model_dump(mode="json", exclude_none=True), "health": exposed})
    caplog.set_level(logging.INFO)
    with EdgeApp(cfg, detector=GatedDetector(), watchdog_s=0.05, notify=lambda s: True) as app:
        assert app.telemetry is not None
        assert app.telemetry.server is not None
        host, port = lan_address(), app.telemetry.server.port
        assert get_from(host, port)[0] == 401
        code, _, body = get_from(host, port, headers={"Authorization": f"Bearer {token}"})
        assert code == 200
        assert json.loads(body)["state"] in {"ok", "degraded"}
    assert any("exposed to the network" in r.getMessage() for r in caplog.records)
    assert token not in caplog.text
