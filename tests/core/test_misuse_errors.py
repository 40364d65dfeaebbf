"""Argument misuse by a programmer raises ``ValueError``; the ``EdgeAppError`` tree is kept for
operational failures (disk, network, bad user input or config, bad model). Every value checked
here is bounded by the config schema first, so only code can pass a bad one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_app.clock import FakeClock
from edge_app.errors import EdgeAppError, OutboxError, TelemetryError
from edge_app.outbox import LaneStore, Outbox, SeqReservation
from edge_app.telemetry import CloudWatchSink, MetricsLaneSender
from edge_app.uplink import DrainLoop, InMemoryTransport, LanePublish, MqttTransport, RateLimiter


def misuses(tmp: Path, outbox: Outbox) -> dict[str, Callable[[], object]]:
    clock = FakeClock()
    transport = InMemoryTransport()

    def drain(max_events: int = 500, ack_timeout_s: float = 10.0) -> DrainLoop:
        return DrainLoop(
            outbox,
            transport,
            topic="t/events",
            clock=clock,
            stop=threading.Event(),
            max_events=max_events,
            ack_timeout_s=ack_timeout_s,
        )

    def mqtt(inflight: int = 20) -> MqttTransport:
        return MqttTransport(
            "localhost", 1883, client_id="t", insecure_plaintext=True, inflight=inflight
        )

    def metrics_lane() -> MetricsLaneSender:
        with LaneStore(tmp / "m.db", "metrics") as lane:
            return MetricsLaneSender(lane, topic="t", namespace="N", max_bytes=10)

    return {
        "drain batch": lambda: drain(max_events=0),
        "drain timeout": lambda: drain(ack_timeout_s=0.0),
        "rate caps": lambda: RateLimiter(clock=clock, publishes_per_s=101),
        "lane publish": lambda: LanePublish("t/metrics", b"{}", ()),
        "metrics lane": metrics_lane,
        "mqtt inflight": lambda: mqtt(inflight=0),
        "mqtt qos": lambda: mqtt().publish("t", b"", qos=2),
        "mqtt subscribe qos": lambda: mqtt().subscribe("t", lambda t, p: None, qos=2),
        "lane name": lambda: LaneStore(tmp / "l.db", "no spaces"),
        "lane rows": lambda: LaneStore(tmp / "l.db", "metrics", max_rows=0),
        "seq block": lambda: SeqReservation(tmp / "s.seq", block=0),
        "outbox budget": lambda: Outbox(
            tmp / "o.db", clock=clock, device="d", max_bytes=0, max_age_s=1.0
        ),
        "outbox age": lambda: Outbox(
            tmp / "o.db", clock=clock, device="d", max_bytes=1 << 20, max_age_s=0.0
        ),
        "lease": lambda: outbox.lease(0, 1 << 20),
    }


NAMES = (
    "drain batch",
    "drain timeout",
    "rate caps",
    "lane publish",
    "metrics lane",
    "mqtt inflight",
    "mqtt qos",
    "mqtt subscribe qos",
    "lane name",
    "lane rows",
    "seq block",
    "outbox budget",
    "outbox age",
    "lease",
)


@pytest.mark.parametrize("name", NAMES)
def test_argument_misuse_is_a_value_error_not_an_edge_app_error(
    tmp_path: Path, outbox: Outbox, name: str
) -> None:
    with pytest.raises(ValueError) as info:
        misuses(tmp_path, outbox)[name]()
    assert not isinstance(info.value, EdgeAppError)
    assert "got" in str(info.value) or "must" in str(info.value)  # says what was wrong


def test_operational_failures_stay_in_the_edge_app_tree(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(OutboxError, match="cannot open the metrics lane"):
        LaneStore(folder, "metrics")  # a folder where the database file should be
    with pytest.raises(TelemetryError, match="namespace"):
        CloudWatchSink(object(), "AWS/EC2")  # a user's setting the schema lets through
