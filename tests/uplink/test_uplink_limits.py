"""IoT Core limits in the drain loop: rate caps, malformed-batch splitting, dead letters."""

from __future__ import annotations

import random
import threading

import pytest

from edge_app.clock import FakeClock
from edge_app.outbox import Outbox, OutboxReader
from edge_app.uplink import (
    Backoff,
    DrainLoop,
    InMemoryTransport,
    RateLimiter,
    decode_batch,
)
from edge_app.uplink.ratelimit import RATE_WINDOW_S
from tests.factories import WAIT_S, flush_until_stalled, make_event

TOPIC = "edge-app/cam-001/events"


def drain_for(
    outbox: Outbox, transport: InMemoryTransport, clock: FakeClock, **kwargs: object
) -> DrainLoop:
    options: dict[str, object] = {
        "max_events": 1,
        "max_wait_s": 0.0,
        "window": 100,
        "retry": Backoff(1.0, 5.0, random.Random(0)),
    }
    options.update(kwargs)
    return DrainLoop(outbox, transport, topic=TOPIC, clock=clock, stop=threading.Event(), **options)  # type: ignore[arg-type]


def delivered_seqs(transport: InMemoryTransport) -> list[int]:
    return [e["seq"] for m in transport.published for e in decode_batch(m.payload)["events"]]


def test_limiter_never_lets_a_one_second_window_exceed_either_cap() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, publishes_per_s=20, bytes_per_s=8192)
    rng = random.Random(7)
    sent: list[tuple[float, int]] = []
    while len(sent) < 500:
        size = rng.randint(10, 3000)
        wait = limiter.delay(size)
        if wait > 0:
            clock.advance(wait if rng.random() < 0.5 else rng.uniform(0, wait))
            continue
        limiter.take(size)
        sent.append((clock.monotonic(), size))
        clock.advance(rng.choice([0.0, 0.001, 0.02]))
    for start, _ in sent:
        window = [size for at, size in sent if start <= at < start + 1.0]
        assert len(window) <= 20
        assert sum(window) <= 8192


def test_limiter_refuses_caps_above_iot_core() -> None:
    with pytest.raises(ValueError, match="configure them lower"):
        RateLimiter(clock=FakeClock(), publishes_per_s=101)
    with pytest.raises(ValueError, match="configure them lower"):
        RateLimiter(clock=FakeClock(), bytes_per_s=600_000)


@pytest.mark.slow
def test_drain_publishes_at_most_the_cap_per_second(outbox: Outbox, clock: FakeClock) -> None:
    transport = InMemoryTransport()
    transport.connect()
    for _ in range(250):
        outbox.enqueue(make_event(clock))
    limiter = RateLimiter(clock=clock, publishes_per_s=100)
    drain = drain_for(outbox, transport, clock, limiter=limiter)
    # The fake clock stands still: one second's allowance and no more.
    assert flush_until_stalled(drain, transport) is False
    assert len(transport.published) == 100
    clock.advance(RATE_WINDOW_S)
    assert flush_until_stalled(drain, transport) is False
    assert len(transport.published) == 200
    clock.advance(RATE_WINDOW_S)
    assert drain.flush(WAIT_S) is True
    assert delivered_seqs(transport) == list(range(1, 251))


@pytest.mark.slow
def test_drain_respects_the_byte_cap(outbox: Outbox, clock: FakeClock) -> None:
    transport = InMemoryTransport()
    transport.connect()
    for _ in range(40):
        outbox.enqueue(make_event(clock))
    limiter = RateLimiter(clock=clock, bytes_per_s=4096)
    drain = drain_for(outbox, transport, clock, limiter=limiter, max_events=3)
    assert flush_until_stalled(drain, transport) is False  # the fake clock stands still
    sent = sum(len(m.payload) for m in transport.published)
    assert 0 < sent <= 4096
    assert outbox.stats().depth == 40 - len(delivered_seqs(transport))


def test_quota_exceeded_backs_off_and_keeps_the_batch(outbox: Outbox, clock: FakeClock) -> None:
    transport = InMemoryTransport()
    transport.connect()
    for _ in range(5):
        outbox.enqueue(make_event(clock))
    transport.fail_next(1, reason_code=0x97)
    drain = drain_for(outbox, transport, clock, max_events=5)
    assert flush_until_stalled(drain, transport) is False  # backing off on a standing clock
    assert outbox.stats().depth == 5
    assert len(transport.rejected) == 1
    clock.advance(10.0)
    assert drain.flush(WAIT_S) is True
    assert delivered_seqs(transport) == [1, 2, 3, 4, 5]
    assert drain.stats().dead_lettered == 0


def test_malformed_batch_is_split_and_the_bad_event_dead_lettered(
    outbox: Outbox, clock: FakeClock
) -> None:
    transport = InMemoryTransport()
    transport.connect()
    for _ in range(4):
        outbox.enqueue(make_event(clock, rule="door"))
    # The broker refuses [1..4], then [1..2], then [1] alone: payload format invalid.
    transport.fail_next(3, reason_code=0x99)
    drain = drain_for(outbox, transport, clock, max_events=4)
    assert drain.flush(WAIT_S) is True
    assert [len(decode_batch(m.payload)["events"]) for m in transport.rejected] == [4, 2, 1]
    assert sorted(delivered_seqs(transport)) == [2, 3, 4]
    assert drain.stats().dead_lettered == 1
    assert outbox.dead_letters() == 1
    # The parked event is reported upstream as a drop in a later batch.
    drops = [decode_batch(m.payload)["dropped"] for m in transport.published]
    assert {"door": {"medium": 1}} in drops


def test_an_event_over_the_payload_limit_is_dead_lettered_not_sent(
    outbox: Outbox, clock: FakeClock
) -> None:
    outbox.enqueue(make_event(clock, extra={"pad": "x" * 140_000}))
    outbox.enqueue(make_event(clock))
    batch = outbox.lease(500, 131_072)
    assert batch is not None
    assert [e["seq"] for e in decode_batch(batch.payload)["events"]] == [2]
    assert sum(batch.dropped["intrusion"].values()) == 1
    assert outbox.dead_letters() == 1
    assert outbox.stats().depth == 1
    with OutboxReader(outbox.path) as reader:  # what `edge-app outbox status` shows
        assert reader.summary().dead_letter == 1
