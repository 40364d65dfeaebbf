"""The appliance's outbox at work: a damaged file at startup (salvaged into a fresh one, kept
aside, reported; every readable event delivered) and the snapshot lane (each event's JPEG on
its own topic)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from edge_app.app import EdgeApp
from edge_app.config import parse_config
from edge_app.outbox import RECOVERY_RULE
from edge_app.outbox.salvage import seq_ranges
from edge_app.uplink import InMemoryTransport, decode_batch
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.cloud import Audit, CloudConsumer
from simulator.scene import SceneTruth
from tests.app.test_app import RULES, app_config, stored_events, tls
from tests.factories import wait_until
from tests.outbox_damage import damage, pages, readable, write_outbox


def test_corrupt_outbox_at_startup_is_moved_aside_and_reported(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    config = app_config(tmp_path, clip, default_model, enabled=False)
    config.outbox_path.parent.mkdir(parents=True, exist_ok=True)
    config.outbox_path.write_bytes(b"\x00garbage from a worn SD card" * 512)
    notes: list[str] = []

    def notify(state: str) -> bool:
        notes.append(state)
        return True

    with EdgeApp(config, notify=notify) as app:
        # The salvage ran in start(), before any thread: systemd heard of it first.
        assert notes[:1] == ["EXTEND_TIMEOUT_USEC=30000000"]
        app.wait()
        raised = app.stats().events

    moved = list(config.outbox_path.parent.glob(f"{config.outbox_path.name}.corrupt-*"))
    assert len(moved) == 1
    assert moved[0].read_bytes().startswith(b"\x00garbage")  # kept, not deleted
    events = stored_events(config)
    assert events[0]["rule"] == RECOVERY_RULE
    assert events[0]["moved_to"] == str(moved[0])
    assert len(events) == raised + 1  # the service went on raising events


def test_a_partly_damaged_outbox_is_salvaged_and_every_readable_event_delivered(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
) -> None:
    """300 events stored by a previous run, one page of them damaged: the app salvages the
    file at startup, delivers every readable event exactly once over mutual TLS with its id and
    seq, then its own events; the recovery event names the seqs lost, so the cloud's audit has
    no unexplained gap; /metrics counts the salvage."""
    clip, _ = scene
    config = parse_config(
        {
            "device": {"thing_name": "test-cam", "data_dir": str(tmp_path / "data")},
            "cameras": [{"name": "yard", "source": {"type": "file", "path": str(clip)}}],
            "detector": {"model": str(default_model), "score_threshold": 0.4},
            "rules": [{**r, "min_score": 0.5, "min_frames": 3, "end_after_s": 1.0} for r in RULES],
            "uplink": {
                "host": "127.0.0.1",
                "port": broker.tls_port,
                "tls": tls(pki),
                "reconnect": {"min_s": 0.2, "max_s": 1.0},
            },
            "metrics": {"sample_s": 0.1, "period_s": 1.0},
            "health": {"port": 0},
            "log_level": "warning",
        }
    )
    db = config.outbox_path
    db.parent.mkdir(parents=True)
    written = write_outbox(db, wall=time.time() - 600)  # from a run ten minutes ago
    damage(db, pages(db, "events", "leaf")[30])
    lost = set(written.events) - readable(db, written.events)
    assert 0 < len(lost) < 10
    salvaged = {written.events[s]["id"] for s in written.events if s not in lost}

    audit = Audit()
    with CloudConsumer(broker.host, broker.port, topic="edge-app/test-cam/events", audit=audit):
        with EdgeApp(config) as app:
            app.wait()
            assert wait_until(lambda: salvaged <= audit.ids and app.outbox.stats().depth == 0)
            assert app.telemetry is not None
            assert app.telemetry.server is not None
            port = app.telemetry.server.port
            assert wait_until(lambda: "edge_app_outbox_salvaged" in _metrics(port))
            metrics = _metrics(port)
            raised = app.stats().events
        assert wait_until(lambda: audit.report().unique == len(salvaged) + 1 + raised)
    by_id = {e["id"]: e for e in audit.events}
    for seq, stored in written.events.items():
        if seq not in lost:
            assert by_id[stored["id"]] == stored  # its id, its seq, its bytes
    (recovered,) = [e for e in audit.events if e["rule"] == RECOVERY_RULE]
    assert (recovered["salvaged"], recovered["unreadable"]) == (len(salvaged), len(lost))
    assert recovered["seq_lost"] == [list(r) for r in seq_ranges(lost)]
    assert recovered["loss_exact"] is True
    assert Path(recovered["moved_to"]).exists()
    report = audit.report()
    assert (report.duplicates, report.missing) == (0, 0)
    assert report.dropped == written.drops  # the two dead letters, reported as before
    assert report.explained == len(lost) + recovered["seq_skipped"][1] - max(written.events)
    assert _sample(metrics, "edge_app_outbox_salvaged", table="events") == len(salvaged)
    assert _sample(metrics, "edge_app_outbox_unreadable", table="events") == len(lost)


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _sample(text: str, family: str, **labels: str) -> float:
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            for sample in metric.samples:
                if labels.items() <= sample.labels.items():
                    return float(sample.value)
    raise AssertionError(f"{family} {labels} not on /metrics")


def test_each_start_event_snapshot_is_published_on_its_own_topic(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth]
) -> None:
    clip, _ = scene
    # InMemoryTransport replaces the MQTT connection: there is no TLS to configure.
    config = app_config(tmp_path, clip, default_model, insecure_plaintext=True)
    transport = InMemoryTransport()
    with EdgeApp(config, transport=transport) as app:
        app.wait()
        # Every event out first: one still held for a fuller batch would have its snapshot
        # queued after stop (the snapshot lane is not flushed at shutdown).
        assert wait_until(lambda: app.outbox.stats().depth == 0 and _all_snapshots_sent(transport))
    events = [e for m in transport.published if m.topic.endswith("/events") for e in
              decode_batch(m.payload)["events"]]  # fmt: skip
    with_snapshot = {e["id"] for e in events if e.get("snapshot")}
    assert with_snapshot, "the clip raised no event with a snapshot"
    snaps = {
        m.topic.rsplit("/", 1)[1]: m.payload
        for m in transport.published
        if m.topic.startswith("edge-app/test-cam/snapshots/")
    }
    assert set(snaps) == with_snapshot
    for payload in snaps.values():
        assert len(payload) <= 131_072
        assert payload[:2] == b"\xff\xd8"  # JPEG


def _all_snapshots_sent(transport: InMemoryTransport) -> bool:
    events = [
        e
        for m in list(transport.published)
        if m.topic.endswith("/events")
        for e in decode_batch(m.payload)["events"]
    ]
    wanted = {e["id"] for e in events if e.get("snapshot")}
    sent = {
        m.topic.rsplit("/", 1)[1] for m in list(transport.published) if "/snapshots/" in m.topic
    }
    return bool(wanted) and wanted <= sent
