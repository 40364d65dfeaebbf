"""Compressed events batches: codecs, content types, packing to the wire limit, rate caps."""

from __future__ import annotations

import gzip
import json
import random
import threading
import zlib

import pytest

from edge_app.clock import FakeClock
from edge_app.config import UplinkConfig
from edge_app.errors import UplinkError
from edge_app.outbox import Outbox
from edge_app.uplink import (
    CODEC_NAMES,
    Backoff,
    DrainLoop,
    InMemoryTransport,
    PublishedMessage,
    RateLimiter,
    codec,
    decode_batch,
    decode_payload,
)
from tests.factories import WAIT_S, flush_until_stalled, make_event

TOPIC = "edge-app/cam-001/events"


def drain_for(
    outbox: Outbox, transport: InMemoryTransport, clock: FakeClock, **kwargs: object
) -> DrainLoop:
    options: dict[str, object] = {
        "max_events": 10_000,
        "max_wait_s": 0.0,
        "window": 100,
        "retry": Backoff(1.0, 5.0, random.Random(0)),
    }
    options.update(kwargs)
    return DrainLoop(outbox, transport, topic=TOPIC, clock=clock, stop=threading.Event(), **options)  # type: ignore[arg-type]


def decoded(message: PublishedMessage) -> dict[str, object]:
    return decode_batch(decode_payload(message.payload, message.content_type))


def seqs(transport: InMemoryTransport) -> list[int]:
    return [
        int(e["seq"])
        for m in transport.published
        for e in decoded(m)["events"]  # type: ignore[attr-defined]
    ]


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_each_codec_round_trips_and_names_itself(name: str) -> None:
    data = json.dumps({"events": [{"id": str(i), "label": "person"} for i in range(200)]})
    c = codec(name)
    wire = c.compress(data.encode())
    assert decode_payload(wire, c.content_type) == data.encode()
    assert c.content_type == ("application/json" if name == "none" else f"application/json+{name}")
    if name != "none":
        assert len(wire) < len(data) / 5  # similar events compress well


def test_gzip_output_is_deterministic() -> None:
    # A batch compressed twice (a retry after a lost PUBACK) gives the same bytes.
    c = codec("gzip")
    assert c.compress(b'{"a": 1}' * 100) == c.compress(b'{"a": 1}' * 100)


def test_decoding_refuses_a_zip_bomb_unknown_types_and_garbage() -> None:
    bomb = gzip.compress(b"\0" * (9 * 1024 * 1024))
    assert len(bomb) < 20_000
    with pytest.raises(UplinkError, match="inflates to more than"):
        decode_payload(bomb, "application/json+gzip")
    with pytest.raises(UplinkError, match="inflates to more than"):
        decode_payload(zlib.compress(b"x" * 5000), "application/json+zlib", max_bytes=4096)
    with pytest.raises(UplinkError, match="unknown content type 'text/csv'"):
        decode_payload(b"a,b", "text/csv")
    with pytest.raises(UplinkError, match="does not decompress"):
        decode_payload(b'{"not": "gzip"}', "application/json+gzip")
    with pytest.raises(UplinkError, match="truncated"):
        decode_payload(gzip.compress(b"x" * 1000)[:-12], "application/json+gzip")
    with pytest.raises(UplinkError, match="does not decompress"):
        decode_payload(b"\x28\xb5\x2f\xfd garbage", "application/json+zstd")


def test_unknown_codec_and_config_value_are_refused() -> None:
    with pytest.raises(UplinkError, match="unknown compression 'lz4'"):
        codec("lz4")
    with pytest.raises(ValueError, match="compression"):
        UplinkConfig(compression="lz4", insecure_plaintext=True)


@pytest.mark.parametrize("name", ["gzip", "zstd"])
@pytest.mark.slow
def test_batches_pack_to_the_compressed_size_limit(
    outbox: Outbox, clock: FakeClock, name: str
) -> None:
    """Each publish is at most max_bytes on the wire, and carries several times the events an
    uncompressed batch of that size could: the limit counts compressed bytes."""
    for i in range(3000):
        outbox.enqueue(make_event(clock, extra={"track": i % 50}))
    event_bytes = outbox.stats().bytes / 3000
    transport = InMemoryTransport()
    transport.connect()
    drain = drain_for(outbox, transport, clock, max_bytes=8192, compression=codec(name))
    clock_steps = 0
    # The limiter's window moves only when the fake clock does: send what it allows, then move.
    while not flush_until_stalled(drain, transport):
        clock.advance(1.1)
        clock_steps += 1
        assert clock_steps < 100
    assert seqs(transport) == list(range(1, 3001))
    assert {m.content_type for m in transport.published} == {f"application/json+{name}"}
    sizes = [len(m.payload) for m in transport.published]
    assert max(sizes) <= 8192
    per_batch = 3000 / len(transport.published)
    uncompressed_fit = 8192 / event_bytes
    assert per_batch > 4 * uncompressed_fit
    assert drain.stats().bytes_sent == sum(sizes)  # wire bytes, as acknowledged


@pytest.mark.slow
def test_the_byte_rate_cap_counts_compressed_bytes(outbox: Outbox, clock: FakeClock) -> None:
    """On a standing clock, one second's byte allowance carries many times the events it
    would uncompressed, and never more wire bytes than the cap."""
    for _ in range(2000):
        outbox.enqueue(make_event(clock))
    event_bytes = outbox.stats().bytes / 2000
    transport = InMemoryTransport()
    transport.connect()
    limiter = RateLimiter(clock=clock, bytes_per_s=16_384)
    drain = drain_for(
        outbox, transport, clock, max_bytes=4096, limiter=limiter, compression=codec("gzip")
    )
    # The fake clock stands still: one window's worth.
    assert flush_until_stalled(drain, transport) is False
    sent = sum(len(m.payload) for m in transport.published)
    assert 0 < sent <= 16_384
    assert len(seqs(transport)) > 4 * 16_384 / event_bytes


def test_uncompressed_batches_say_application_json(outbox: Outbox, clock: FakeClock) -> None:
    for _ in range(5):
        outbox.enqueue(make_event(clock))
    transport = InMemoryTransport()
    transport.connect()
    assert drain_for(outbox, transport, clock).flush(WAIT_S) is True
    assert [m.content_type for m in transport.published] == ["application/json"]
    assert json.loads(transport.published[0].payload)["last_seq"] == 5


def test_a_batch_that_compresses_too_large_is_leased_again_smaller(
    outbox: Outbox, clock: FakeClock
) -> None:
    """Random (incompressible) padding makes the learned ratio wrong: the packer releases the
    batch and leases fewer events; nothing is lost or sent twice, and none is over the limit."""
    rng = random.Random(3)
    for i in range(60):
        pad = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(300))
        outbox.enqueue(make_event(clock, extra={"pad": pad if i >= 20 else "x" * 300}))
    transport = InMemoryTransport()
    transport.connect()
    drain = drain_for(outbox, transport, clock, max_bytes=4096, compression=codec("zlib"))
    while not flush_until_stalled(drain, transport):
        clock.advance(1.1)
    assert seqs(transport) == list(range(1, 61))
    assert max(len(m.payload) for m in transport.published) <= 4096
    assert drain.stats().repacked > 0
