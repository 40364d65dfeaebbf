"""PutMetricData against moto in server mode, through real boto3 over HTTP and a real TCP
proxy that plays the network outage."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore
from edge_app.telemetry import (
    MAX_AGE_S,
    CloudWatchSink,
    MetricDatum,
    MinuteAggregator,
    Registry,
    TelemetryLoop,
)
from edge_app.telemetry.sinks import MAX_DATUMS_PER_REQUEST
from simulator.broker import free_port
from simulator.proxy import TcpProxy
from tests.telemetry.aws import moto_client


def client(endpoint: str) -> Any:
    return moto_client("cloudwatch", endpoint)


def recent_minute() -> float:
    """Wall time 40 s into a minute about an hour ago (CloudWatch takes up to 14 days)."""
    return math.floor(time.time() / 60) * 60 - 3600 + 40


class Requests:
    """Records each PutMetricData request (datum count, body bytes) via botocore's event hook."""

    def __init__(self, cw: Any) -> None:
        self.sizes: list[tuple[int, int]] = []
        cw.meta.events.register("before-parameter-build.cloudwatch.PutMetricData", self._call)
        cw.meta.events.register("before-send.cloudwatch.PutMetricData", self._send)
        self._pending = 0

    def _call(self, params: dict[str, Any], **_: Any) -> None:
        self._pending = len(params["MetricData"])

    def _send(self, request: Any, **_: Any) -> None:
        self.sizes.append((self._pending, len(request.body or b"")))


def test_offline_minutes_arrive_after_reconnect_with_original_timestamps(
    tmp_path: Path, moto_endpoint: str
) -> None:
    port = int(moto_endpoint.rsplit(":", 1)[1])
    clock = FakeClock(wall=recent_minute())
    reg = Registry({"device": "cam-offline"})
    events = reg.counter("Events", rule="intrusion", severity="high")
    with (
        TcpProxy(free_port(), "127.0.0.1", port) as network,
        LaneStore(tmp_path / "outbox.db", "metrics") as lane,
    ):
        network.down()
        sink = CloudWatchSink(client(f"http://127.0.0.1:{network.listen_port}"), "EdgeAppTest")
        loop = TelemetryLoop(
            aggregator=MinuteAggregator(reg),
            lane=lane,
            sink=sink,
            clock=clock,
            stop=threading.Event(),
        )
        minutes = []
        for minute in range(3):  # three offline minutes, 2, 3 and 4 events
            minutes.append(math.floor(clock.time() / 60) * 60)
            events.inc(minute + 2)
            loop.tick()
            clock.advance(60)
        loop.tick()  # closes the third minute
        assert lane.stats().rows == 3
        assert loop.sent == 0
        network.up()
        assert loop.ship() == 3
        assert lane.stats().rows == 0
    cw = client(moto_endpoint)
    stats = cw.get_metric_statistics(
        Namespace="EdgeAppTest",
        MetricName="Events",
        Dimensions=[
            {"Name": "device", "Value": "cam-offline"},
            {"Name": "rule", "Value": "intrusion"},
            {"Name": "severity", "Value": "high"},
        ],
        StartTime=datetime.fromtimestamp(minutes[0] - 60, UTC),
        EndTime=datetime.fromtimestamp(minutes[-1] + 120, UTC),
        Period=60,
        Statistics=["Sum"],
    )
    got = {p["Timestamp"].timestamp(): p["Sum"] for p in stats["Datapoints"]}
    assert got == {minutes[0]: 2.0, minutes[1]: 3.0, minutes[2]: 4.0}


def datums(n: int, ts: float, *, dims: int = 1, width: int = 8) -> list[MetricDatum]:
    return [
        MetricDatum(
            f"Backlog{i}",
            tuple((f"d{j:02d}", f"v{i}".ljust(width, "x")) for j in range(dims)),
            ts,
            "Count",
            3,
            6.0,
            1.0,
            3.0,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("count", "dims", "width", "min_requests"),
    [(2500, 1, 8, 3), (1000, 20, 200, 4)],  # datum-count bound; byte bound (~5 KB/datum)
)
def test_large_backlog_respects_request_limits(
    moto_endpoint: str, count: int, dims: int, width: int, min_requests: int
) -> None:
    cw = client(moto_endpoint)
    seen = Requests(cw)
    namespace = f"EdgeAppLimits{count}"
    CloudWatchSink(cw, namespace).send(datums(count, recent_minute(), dims=dims, width=width))
    assert len(seen.sizes) >= min_requests
    assert sum(n for n, _ in seen.sizes) == count
    assert all(n <= MAX_DATUMS_PER_REQUEST for n, _ in seen.sizes)
    assert all(size <= 1_048_576 for _, size in seen.sizes)
    names: set[str] = set()
    for page in cw.get_paginator("list_metrics").paginate(Namespace=namespace):
        names |= {m["MetricName"] for m in page["Metrics"]}
    assert len(names) == count


def test_stale_aggregates_are_dropped_and_counted(tmp_path: Path, moto_endpoint: str) -> None:
    clock = FakeClock(wall=time.time())
    now = clock.time()
    cw = client(moto_endpoint)
    with LaneStore(tmp_path / "outbox.db", "metrics") as lane:
        old = datums(5, now - MAX_AGE_S - 120)
        fresh = datums(2, now - 600)
        lane.add([(d.ts, d.to_json()) for d in old + fresh])
        loop = TelemetryLoop(
            aggregator=MinuteAggregator(Registry()),
            lane=lane,
            sink=CloudWatchSink(cw, "EdgeAppStale"),
            clock=clock,
            stop=threading.Event(),
        )
        assert loop.ship() == 2
        stats = lane.stats()
        assert (stats.rows, stats.dropped) == (0, 5)
    listed = cw.list_metrics(Namespace="EdgeAppStale")["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == ["Backlog0", "Backlog1"]
    assert timedelta(seconds=MAX_AGE_S) == timedelta(days=14)


def test_minutes_recorded_before_the_clock_was_set_arrive_at_their_true_times(
    tmp_path: Path, moto_endpoint: str
) -> None:
    """A board boots with its clock in 2008; three minutes later NTP steps it. The minutes
    recorded under the wrong clock reach CloudWatch at their true times, not dropped as
    "older than 14 days"."""
    true_start = recent_minute()
    clock = FakeClock(monotonic=100.0, wall=true_start - 18 * 365 * 86400)
    reg = Registry({"device": "cam-no-rtc"})
    events = reg.counter("Events", rule="intrusion", severity="high")
    with LaneStore(tmp_path / "outbox.db", "metrics", clock=clock, boot_id="boot-1") as lane:
        loop = TelemetryLoop(
            aggregator=MinuteAggregator(reg),
            lane=lane,
            sink=None,  # offline: aggregates wait in the lane
            clock=clock,
            stop=threading.Event(),
        )
        for minute in range(3):
            events.inc(minute + 2)
            loop.tick()
            clock.advance(60)
        loop.tick()  # closes the third minute, still in 2008
        assert [time.gmtime(r.ts).tm_year for r in lane.peek(10)] == [2008] * 3
        clock.set_wall(true_start + 180)  # NTP: the true time, 3 min after "boot"
        online = TelemetryLoop(
            aggregator=MinuteAggregator(reg),
            lane=lane,
            sink=CloudWatchSink(client(moto_endpoint), "EdgeAppTest"),
            clock=clock,
            stop=threading.Event(),
        )
        online.tick()
        assert lane.times_corrected == 3
        assert online.sent == 3
        assert lane.stats().dropped == 0
    stats = client(moto_endpoint).get_metric_statistics(
        Namespace="EdgeAppTest",
        MetricName="Events",
        Dimensions=[
            {"Name": "device", "Value": "cam-no-rtc"},
            {"Name": "rule", "Value": "intrusion"},
            {"Name": "severity", "Value": "high"},
        ],
        StartTime=datetime.fromtimestamp(true_start - 120, UTC),
        EndTime=datetime.fromtimestamp(true_start + 300, UTC),
        Period=60,
        Statistics=["Sum"],
    )
    minute0 = math.floor(true_start / 60) * 60
    got = {p["Timestamp"].timestamp(): p["Sum"] for p in stats["Datapoints"]}
    assert got == {minute0: 2.0, minute0 + 60: 3.0, minute0 + 120: 4.0}
