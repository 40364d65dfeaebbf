"""End to end with encryption at rest: the real app (real model, generated real-photo clip)
stores events, snapshots and clips encrypted while offline, then delivers them in clear over
mutual TLS to a real Mosquitto once the link is up."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_app.app import EdgeApp
from edge_app.atrest import generate_key_file
from edge_app.config import parse_config
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.cloud import Audit, CloudConsumer
from simulator.peer import SubscribingPeer
from simulator.proxy import TcpProxy
from simulator.scene import SceneTruth
from tests.app.test_app import RULES, tls
from tests.factories import wait_until


class SnapshotSubscriber(SubscribingPeer):
    """Keeps the last payload published on each ``edge-app/+/snapshots/+`` topic."""

    name = "snapshot subscriber"

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, [("edge-app/+/snapshots/+", 1)], client_id="snap-sub")
        self._lock = threading.Lock()
        self._payloads: dict[str, bytes] = {}

    def payloads(self) -> dict[str, bytes]:
        with self._lock:
            return dict(self._payloads)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._payloads[msg.topic.rsplit("/", 1)[1]] = bytes(msg.payload)


def test_encrypted_at_rest_offline_then_delivered_in_clear(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
) -> None:
    clip, _ = scene
    key = tmp_path / "at-rest.key"
    generate_key_file(key)
    data = tmp_path / "data"
    audit = Audit()
    events: list[dict[str, Any]] = []
    with (
        TcpProxy(free_port(), broker.host, broker.tls_port) as network,
        CloudConsumer(
            broker.host, broker.port, topic="edge-app/test-cam/events", audit=audit
        ) as cloud,
        SnapshotSubscriber(broker.host, broker.port) as snapshots,
    ):
        cloud.on_batch = lambda batch: events.extend(batch["events"])
        config = parse_config(
            {
                "device": {"thing_name": "test-cam", "data_dir": str(data)},
                "cameras": [
                    {
                        "name": "yard",
                        "source": {"type": "file", "path": str(clip)},
                        "clips": {"pre_s": 1.0, "post_s": 1.0, "fps": 5, "width": 320},
                    }
                ],
                "detector": {"model": str(default_model), "score_threshold": 0.4},
                "rules": [
                    {**r, "min_score": 0.5, "min_frames": 3, "end_after_s": 1.0} for r in RULES
                ],
                "uplink": {
                    "host": "127.0.0.1",
                    "port": network.listen_port,
                    "tls": tls(pki),
                    "reconnect": {"min_s": 0.2, "max_s": 1.0},
                    "batch": {"max_events": 4, "max_wait_s": 0.1},
                },
                "encryption": {"enabled": True, "key_file": str(key)},
                "log_level": "warning",
            }
        )
        app = EdgeApp(config)
        app.start()
        try:
            app.wait()
            offline = app.stats()
            assert offline.events > 0
            assert offline.outbox_depth == offline.events  # link down: all stored, none sent
            with sqlite3.connect(f"file:{config.outbox_path}?mode=ro", uri=True) as conn:
                kinds = {k for (k,) in conn.execute("SELECT typeof(body) FROM events")}
            assert kinds == {"blob"}
            for stored in data.rglob("outbox.db*"):  # no event content in clear on disk
                assert b'"label":"' not in stored.read_bytes(), stored
            files = [p for p in data.rglob("*") if p.is_file() and p.suffix in {".jpg", ".mp4"}]
            assert files == []  # every snapshot and clip is <name>.enc
            assert list(data.rglob("*.jpg.enc"))
            network.up()
            assert audit.wait_for_seq(offline.last_seq, timeout=30.0)
            wanted = {e["id"]: e["snapshot"] for e in events if e.get("snapshot")}
            assert wanted, "the clip raised no event with a snapshot"
            assert wait_until(lambda: set(wanted) <= set(snapshots.payloads()))
        finally:
            app.stop(flush_timeout_s=5.0)
    report = audit.report()
    assert report.missing == 0
    assert report.unique == offline.last_seq
    assert any(e.get("clip") for e in events)
    received = snapshots.payloads()
    for event_id, snap in wanted.items():
        payload = received[event_id]
        assert payload[:2] == b"\xff\xd8"  # a clear JPEG, not the sealed file
        assert hashlib.sha256(payload).hexdigest() == snap["sha256"]
