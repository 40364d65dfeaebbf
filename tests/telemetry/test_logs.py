"""Warnings and errors shipped to CloudWatch Logs (moto server, real boto3), buffered offline;
every PutLogEvents batch obeys every rule."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from edge_app.clock import FakeClock
from edge_app.outbox import LaneStore
from edge_app.telemetry import CloudWatchLogsSink, LogBuffer, LogShipper, plan_log_batches
from edge_app.telemetry.logship import (
    DAY_MS,
    EVENT_OVERHEAD,
    MAX_AGE_MS,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
)
from simulator.broker import free_port
from simulator.proxy import TcpProxy
from tests.telemetry.aws import moto_client


def logs_client(endpoint: str) -> Any:
    return moto_client("logs", endpoint)


class Batches:
    """Every PutLogEvents request's events, seen through botocore's parameter hook."""

    def __init__(self, client: Any) -> None:
        self.seen: list[list[dict[str, Any]]] = []
        client.meta.events.register(
            "before-parameter-build.logs.PutLogEvents",
            lambda params, **_: self.seen.append(list(params["logEvents"])),
        )


def check_rules(batch: list[dict[str, Any]], now_ms: int) -> None:
    stamps = [e["timestamp"] for e in batch]
    assert stamps == sorted(stamps)  # chronological
    assert len(batch) <= MAX_BATCH_EVENTS
    assert sum(len(e["message"].encode()) + EVENT_OVERHEAD for e in batch) <= MAX_BATCH_BYTES
    assert stamps[-1] - stamps[0] < DAY_MS
    assert stamps[0] >= now_ms - MAX_AGE_MS


def test_plan_obeys_every_rule_on_a_hostile_backlog() -> None:
    now = 1_790_000_000_000
    rng = random.Random(7)
    events = [(now - rng.randrange(0, 3 * DAY_MS), f"line {i}") for i in range(25_000)]
    events += [(now - i * 1000, "x" * 300_000) for i in range(6)]  # oversize: cut to 256 KB
    events += [(now - MAX_AGE_MS - 5, "too old")] * 3
    events += [(now + 3 * 3600 * 1000, "clock ahead")]
    plan = plan_log_batches(events, now)
    assert plan.too_old == 3
    assert [m for _, m in plan.too_new] == ["clock ahead"]
    assert sum(len(b) for b in plan.batches) == 25_006
    for batch in plan.batches:
        check_rules([{"timestamp": t, "message": m} for t, m in batch], now)
    assert max(len(m.encode()) for b in plan.batches for _, m in b) <= 256 * 1024 - EVENT_OVERHEAD


def test_warnings_raised_offline_arrive_after_reconnect(tmp_path: Path, moto_endpoint: str) -> None:
    port = int(moto_endpoint.rsplit(":", 1)[1])
    clock = FakeClock(wall=time.time())
    buffer = LogBuffer(burst=1000)  # this test is about shipping, not repeats
    logger = logging.getLogger("edge_app.test_logship")
    logger.addHandler(buffer)
    logger.propagate = False
    try:
        with (
            TcpProxy(free_port(), "127.0.0.1", port) as network,
            LaneStore(tmp_path / "outbox.db", "logs") as lane,
        ):
            client = logs_client(f"http://127.0.0.1:{network.listen_port}")
            batches = Batches(client)
            shipper = LogShipper(
                buffer, lane, CloudWatchLogsSink(client, "/edge-app", "d1"), clock=clock
            )
            logger.info("not shipped: below warning")
            for i in range(30):
                logger.warning("disk slow %d", i)
            logger.error("key -----BEGIN PRIVATE KEY-----abc-----END PRIVATE KEY----- leaked?")
            assert shipper.tick() == 0  # offline: stored in the lane
            assert lane.stats().rows == 31
            network.up()
            assert shipper.tick() == 31
            assert lane.stats().rows == 0
    finally:
        logger.removeHandler(buffer)
        logger.propagate = True
    now_ms = int(clock.time() * 1000)
    for batch in batches.seen:
        check_rules(batch, now_ms)
    got = logs_client(moto_endpoint).get_log_events(
        logGroupName="/edge-app", logStreamName="d1", startFromHead=True
    )["events"]
    messages = [e["message"] for e in got]
    assert len(messages) == 31
    assert '"msg": "disk slow 0"' in messages[0]
    assert not any("abc" in m for m in messages)  # PEM contents never leave the device
    assert not any("below warning" in m for m in messages)


def test_large_backlog_goes_out_in_rule_abiding_batches(tmp_path: Path, moto_endpoint: str) -> None:
    clock = FakeClock(wall=time.time())
    now_ms = int(clock.time() * 1000)
    client = logs_client(moto_endpoint)
    batches = Batches(client)
    buffer = LogBuffer(capacity=30_000)
    with LaneStore(tmp_path / "outbox.db", "logs") as lane:
        rng = random.Random(1)
        rows = [(now_ms - rng.randrange(0, 2 * DAY_MS), f"line {i:05d}") for i in range(25_000)]
        rows += [(now_ms - MAX_AGE_MS - 60_000, "stale")] * 4
        lane.add([(ts / 1000, json.dumps([ts, m])) for ts, m in rows])
        shipper = LogShipper(
            buffer, lane, CloudWatchLogsSink(client, "/edge-app", "big"), clock=clock
        )
        assert shipper.tick() == 25_000
        assert lane.stats().dropped == 4
    assert len(batches.seen) >= 3  # 25,000 over two days: the 10,000 and 24 h limits both bite
    for batch in batches.seen:
        check_rules(batch, now_ms)


def test_repeated_lines_are_rate_limited_and_counted() -> None:
    buffer = LogBuffer(burst=3, window_s=60.0)
    logger = logging.getLogger("edge_app.test_repeats")
    logger.addHandler(buffer)
    logger.propagate = False
    try:
        records = [
            logging.LogRecord(
                "edge_app.test_repeats", logging.WARNING, "f", 1, "link down: %s", ("x",), None
            )
            for _ in range(10)
        ]
        for i, record in enumerate(records):
            record.created = 1_790_000_000.0 + i  # ten repeats within one window
            logger.handle(record)
        late = logging.LogRecord(
            "edge_app.test_repeats", logging.WARNING, "f", 1, "link down: %s", ("y",), None
        )
        late.created = 1_790_000_100.0  # next window
        logger.handle(late)
        other = logging.LogRecord(
            "edge_app.test_repeats", logging.ERROR, "f", 1, "disk full", (), None
        )
        logger.handle(other)
    finally:
        logger.removeHandler(buffer)
        logger.propagate = True
    lines = [json.loads(line) for _, line in buffer.take()]
    assert [line["msg"] for line in lines] == ["link down: x"] * 3 + ["link down: y", "disk full"]
    assert lines[3]["repeats_suppressed"] == 7
    assert buffer.suppressed == 7


def test_logs_wait_while_the_mqtt_uplink_has_a_backlog(tmp_path: Path, moto_endpoint: str) -> None:
    clock = FakeClock(wall=time.time())
    buffer = LogBuffer()
    backlog = [True]  # what the app's DrainLoop.backlog() would say
    with LaneStore(tmp_path / "outbox.db", "logs") as lane:
        shipper = LogShipper(
            buffer,
            lane,
            CloudWatchLogsSink(logs_client(moto_endpoint), "/edge-app", "yield"),
            clock=clock,
            may_send=lambda: not backlog[0],
        )
        buffer.emit(
            logging.LogRecord("edge_app.x", logging.WARNING, "f", 1, "uplink slow", (), None)
        )
        assert shipper.tick() == 0  # events/snapshots/metrics waiting: stored, not sent
        assert lane.stats().rows == 1
        backlog[0] = False
        assert shipper.tick() == 1
        assert lane.stats().rows == 0
