"""The drain loop over the shipped InMemoryTransport, a FakeClock and a real SQLite outbox."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge_app.clock import Clock, FakeClock, SystemClock
from edge_app.errors import UplinkError
from edge_app.outbox import Outbox
from edge_app.uplink import Backoff, DrainLoop, InMemoryTransport, decode_batch, encode_batch
from tests.factories import DEVICE, flush_until_stalled, make_event, wait_until

TOPIC = "edge-app/cam-001/events"
WAIT_S = 10.0


def batches(transport: InMemoryTransport) -> list[dict[str, Any]]:
    return [decode_batch(m.payload) for m in transport.published if m.topic == TOPIC]


def first_seen_seqs(transport: InMemoryTransport) -> list[int]:
    """Seqs in order of first arrival, duplicates (at-least-once redeliveries) removed."""
    seen: dict[str, int] = {}
    for batch in batches(transport):
        for event in batch["events"]:
            seen.setdefault(event["id"], event["seq"])
    return list(seen.values())


@pytest.fixture
def stop() -> threading.Event:
    return threading.Event()


def make_drain(
    outbox: Outbox,
    transport: InMemoryTransport,
    clock: Clock,
    stop: threading.Event,
    **kwargs: Any,
) -> DrainLoop:
    options: dict[str, Any] = {
        "max_events": 7,
        "max_wait_s": 0.0,
        "ack_timeout_s": 10.0,
        "window": 3,
        "retry": Backoff(1.0, 5.0, random.Random(0)),
    }
    options.update(kwargs)
    return DrainLoop(outbox, transport, topic=TOPIC, clock=clock, stop=stop, **options)


@contextmanager
def running(drain: DrainLoop, stop: threading.Event) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=drain.run, name="drain", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(WAIT_S)
        assert not thread.is_alive(), "drain loop did not stop"


@pytest.mark.slow
def test_delivers_everything_in_order_while_the_link_toggles(
    outbox: Outbox, stop: threading.Event
) -> None:
    """Five times: events arrive, a batch is in flight, the link drops (failing it), more
    events are stored offline, the link returns. Every step waits on a condition, so the
    link drop always hits a batch whatever the machine's speed.

    The clock is the real one: this test runs the loop's threads in real time, and the rate
    limiter (100 publishes/s) would stand still on a frozen FakeClock once 100 batches had
    gone out, which is what made this test flaky (a slow disk makes one batch per event).
    """
    clock = SystemClock()
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    drain = make_drain(outbox, transport, clock, stop)

    def enqueue(n: int) -> None:
        for _ in range(n):
            outbox.enqueue(make_event(clock))
            drain.notify()

    with running(drain, stop):
        for _ in range(5):
            enqueue(20)
            assert wait_until(lambda: transport.pending > 0)  # a batch awaits its PUBACK
            transport.set_online(False)  # fails whatever awaits a PUBACK
            enqueue(20)  # stored while offline
            transport.set_online(True)
        # The broker acknowledges everything from now on.
        assert wait_until(lambda: transport.ack_pending() >= 0 and outbox.stats().depth == 0)

    assert first_seen_seqs(transport) == list(range(1, 201))
    stats = drain.stats()
    assert stats.events_sent == 200  # each event acknowledged (and deleted) exactly once
    assert stats.publish_failures >= 5  # every drop hit a batch in flight


def test_failed_publish_keeps_the_data_and_retries_after_backoff(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    for _ in range(3):
        outbox.enqueue(make_event(clock))
    transport.fail_next(1, reason_code=0x97)  # quota exceeded
    drain = make_drain(outbox, transport, clock, stop)

    # The retry delay runs on the fake clock, which stands still: nothing more is sent.
    assert flush_until_stalled(drain, transport) is False
    stats = outbox.stats()
    assert (stats.depth, stats.leased) == (3, 0)
    assert drain.stats().publish_failures == 1
    assert transport.published == []
    assert len(transport.rejected) == 1

    clock.advance(60.0)
    assert drain.flush(WAIT_S) is True
    assert outbox.stats().depth == 0
    assert first_seen_seqs(transport) == [1, 2, 3]


def test_several_batches_are_in_flight_before_any_puback(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    for _ in range(30):
        outbox.enqueue(make_event(clock))
    drain = make_drain(outbox, transport, clock, stop, max_events=5, window=4)
    with running(drain, stop):
        assert wait_until(lambda: transport.pending == 4)
        assert len(transport.published) == 4  # the window, not more
        assert outbox.stats().leased == 20
        assert wait_until(lambda: transport.ack_pending() >= 0 and outbox.stats().depth == 0)
    assert drain.stats().batches_sent == 6
    assert first_seen_seqs(transport) == list(range(1, 31))


def test_missing_puback_times_out_and_the_batch_is_sent_again(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    for _ in range(2):
        outbox.enqueue(make_event(clock))
    drain = make_drain(outbox, transport, clock, stop, window=1, ack_timeout_s=10.0)
    with running(drain, stop):
        assert wait_until(lambda: transport.pending == 1)
        clock.advance(11.0)
        drain.notify()
        assert wait_until(lambda: drain.stats().publish_failures == 1)
        stats = outbox.stats()
        assert (stats.depth, stats.leased) == (2, 0)  # released, not lost

        clock.advance(60.0)  # past the retry delay
        drain.notify()
        assert wait_until(lambda: len(transport.published) == 2)
        transport.ack_pending()
        assert wait_until(lambda: outbox.stats().depth == 0)
    first, second = batches(transport)
    assert first["events"] == second["events"]  # a redelivery: same events, new batch
    assert first["batch_id"] != second["batch_id"]


@pytest.mark.slow
def test_a_small_backlog_waits_for_a_fuller_batch(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    drain = make_drain(outbox, transport, clock, stop, max_events=10, max_wait_s=2.0)
    with running(drain, stop):
        for _ in range(3):
            outbox.enqueue(make_event(clock))
            drain.notify()
        time.sleep(0.3)
        assert transport.published == []  # held: the fake clock has not moved
        clock.advance(2.5)
        drain.notify()
        assert wait_until(lambda: len(transport.published) == 1)
        assert len(batches(transport)[0]["events"]) == 3

        for _ in range(10):  # a full batch goes at once, no waiting
            outbox.enqueue(make_event(clock))
            drain.notify()
        assert wait_until(lambda: len(transport.published) == 2)
    assert [b["last_seq"] for b in batches(transport)] == [3, 13]


def test_payload_carries_schema_fields_and_drops_once(
    tmp_path: Path, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    with Outbox(
        tmp_path / "small.db",
        clock=clock,
        device=DEVICE,
        max_bytes=1024 * 1024,
        max_age_s=60.0,
        encoder=encode_batch,
    ) as box:
        box.enqueue(make_event(clock, rule="door"))
        clock.advance(120.0)  # the door event expires unsent
        for _ in range(9):
            box.enqueue(make_event(clock))
        drain = make_drain(box, transport, clock, stop, max_events=5)
        assert drain.flush(WAIT_S) is True

    sent = batches(transport)
    assert [len(b["events"]) for b in sent] == [5, 4]
    for batch in sent:
        assert batch["schema"] == "edge-app/events/1"
        assert batch["device"] == DEVICE
        assert batch["first_seq"] == batch["events"][0]["seq"]
        assert batch["last_seq"] == batch["events"][-1]["seq"]
    assert sent[0]["dropped"] == {"door": {"medium": 1}}
    assert sent[1]["dropped"] == {}
    assert len({b["batch_id"] for b in sent}) == 2
    assert json.loads(transport.published[0].payload)["events"][0]["seq"] == 2


def test_offline_flush_gives_up_at_the_deadline_and_keeps_everything(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport(online=False)
    transport.connect()
    for _ in range(4):
        outbox.enqueue(make_event(clock))
    drain = make_drain(outbox, transport, clock, stop)
    assert drain.flush(0.2) is False
    stats = outbox.stats()
    assert (stats.depth, stats.leased) == (4, 0)


def test_flush_while_run_is_active_lets_run_deliver_without_holding_back(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    drain = make_drain(outbox, transport, clock, stop, max_events=50, max_wait_s=30.0)
    assert drain.flush(WAIT_S) is True  # nothing stored: done at once
    with running(drain, stop) as thread:
        for _ in range(3):
            outbox.enqueue(make_event(clock))
        # The partial batch would be held for 30 s of (fake, frozen) time; flush says send now.
        assert drain.flush(WAIT_S) is True
        assert thread.is_alive()
        with pytest.raises(UplinkError, match="already active"):
            drain.run()
    assert outbox.stats().depth == 0
    assert [len(b["events"]) for b in batches(transport)] == [3]


def test_a_failing_outbox_does_not_kill_the_loop(
    outbox: Outbox,
    clock: FakeClock,
    stop: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    drain = make_drain(outbox, transport, clock, stop)
    with running(drain, stop) as thread:
        outbox.close()
        drain.notify()
        assert wait_until(lambda: "drain loop step failed" in caplog.text)
        assert thread.is_alive()


def test_flush_after_run_settles_batches_still_in_flight(
    outbox: Outbox, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport(auto_ack=False)
    transport.connect()
    for _ in range(10):
        outbox.enqueue(make_event(clock))
    drain = make_drain(outbox, transport, clock, stop, max_events=5, window=2)
    with running(drain, stop):
        assert wait_until(lambda: transport.pending == 2)
    # Shutdown: run() has returned with two batches unacknowledged; their PUBACKs arrive now.
    transport.ack_pending()
    assert drain.flush(WAIT_S) is True
    assert outbox.stats().depth == 0
    assert len(transport.published) == 2  # acked where they were, not sent a second time
    assert drain.stats().events_sent == 10


def test_the_drain_supplies_the_batch_encoder(
    tmp_path: Path, clock: FakeClock, stop: threading.Event
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    # Built as the composition root does: the outbox cannot import the uplink's encoder.
    with Outbox(
        tmp_path / "plain.db", clock=clock, device=DEVICE, max_bytes=1 << 20, max_age_s=60.0
    ) as box:
        box.enqueue(make_event(clock))
        assert make_drain(box, transport, clock, stop).flush(WAIT_S) is True
    assert first_seen_seqs(transport) == [1]
