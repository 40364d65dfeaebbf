"""Metrics as the drain loop's lowest MQTT lane, through a real Mosquitto (mutual TLS) behind
the outage proxy: stored while the link is down, then delivered after every event."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from edge_app.clock import SystemClock
from edge_app.outbox import LaneStore
from edge_app.telemetry import MetricsLaneSender, MinuteAggregator, Registry, TelemetryLoop
from edge_app.uplink import DrainLoop, decode_batch
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.proxy import TcpProxy
from tests.factories import wait_until
from tests.fakes import RecordingSubscriber
from tests.uplink.test_mqtt_transport import (
    WAIT_S,
    make_event,
    make_transport,
    open_outbox,
)

pytestmark = pytest.mark.broker


def test_metrics_arrive_on_the_metrics_topic_after_the_events(
    broker: Mosquitto, pki: Pki, tmp_path: Path
) -> None:
    thing = "lanes-cam"
    prefix = f"edge-app/{thing}-{time.monotonic_ns()}"
    db = tmp_path / "outbox.db"
    clock = SystemClock()
    registry = Registry({"device": thing})
    frames = registry.counter("FramesProcessed", "Count", "frames", camera="dock")
    stop = threading.Event()
    with (
        RecordingSubscriber(broker.host, broker.port, f"{prefix}/#") as cloud,
        TcpProxy(free_port(), broker.host, broker.tls_port) as network,
        open_outbox(db, thing) as outbox,
        LaneStore(db, "metrics") as stored,
        LaneStore(db, "metrics") as read,
        make_transport("127.0.0.1", network.listen_port, pki, prefix) as transport,
    ):
        # Offline: the telemetry loop (no sink: the mqtt case) stores minutes, events pile up.
        aggregator = MinuteAggregator(registry, period_s=0.05)
        telemetry = TelemetryLoop(
            aggregator=aggregator, lane=stored, sink=None, clock=clock, stop=stop
        )
        for _ in range(6):
            frames.inc(5)
            telemetry.tick()
            time.sleep(0.06)
        stored.add([(d.ts, d.to_json()) for d in aggregator.close()])
        minutes = stored.stats().rows
        assert minutes >= 3
        for _ in range(300):
            outbox.enqueue(make_event(thing))
        metrics = MetricsLaneSender(read, topic=f"{prefix}/metrics", namespace="EdgeApp")
        drain = DrainLoop(
            outbox,
            transport,
            topic=f"{prefix}/events",
            clock=clock,
            stop=stop,
            max_events=20,
            max_wait_s=0.05,
            window=8,
            lanes=[metrics],
        )
        thread = threading.Thread(target=drain.run, name="drain", daemon=True)
        thread.start()
        try:
            time.sleep(0.3)  # the drain runs against a down link: nothing may leave
            assert cloud.messages() == []
            network.up()
            assert wait_until(lambda: stored.stats().rows == 0 and outbox.stats().depth == 0)
            assert wait_until(lambda: len(cloud.payloads(f"{prefix}/metrics")) >= 1)
        finally:
            stop.set()
            thread.join(WAIT_S)
        assert not thread.is_alive()
    topics = [t for t, *_ in cloud.messages() if not t.endswith("/status")]
    events = [i for i, t in enumerate(topics) if t.endswith("/events")]
    emf = [i for i, t in enumerate(topics) if t.endswith("/metrics")]
    assert max(events) < min(emf)  # the metrics lane waited for every event
    seqs = sorted(
        e["seq"] for p in cloud.payloads(f"{prefix}/events") for e in decode_batch(p)["events"]
    )
    assert seqs == list(range(1, 301))
    docs = [json.loads(p) for p in cloud.payloads(f"{prefix}/metrics")]
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EdgeApp" for d in docs)
    assert sum(d.get("FramesProcessed", 0) for d in docs) == 30  # every increment, once
    assert metrics.sent == minutes
    assert all(m[2] == 1 for m in cloud.messages() if m[0].endswith("/metrics"))  # QoS 1
