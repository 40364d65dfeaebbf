"""MqttTransport and the drain loop against a real Mosquitto over mutual TLS.

A plain-listener subscriber on the same broker plays the cloud side. Disruptive scenarios get a
broker or a TCP proxy of their own so the session broker stays up for everyone else.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge_app.clock import SystemClock
from edge_app.config import TlsConfig
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.errors import PublishRejectedError, UplinkError
from edge_app.ids import new_ulid
from edge_app.outbox import Outbox
from edge_app.uplink import (
    DrainLoop,
    MqttTransport,
    decode_batch,
    encode_batch,
    status_payload,
)
from simulator.broker import BrokerError, Mosquitto, free_port
from simulator.certs import Pki
from simulator.proxy import TcpProxy
from tests.factories import flush_until, wait_until
from tests.fakes import RecordingSubscriber

pytestmark = pytest.mark.broker

WAIT_S = 15.0


def client_tls(pki: Pki, *, rogue: bool = False) -> TlsConfig:
    if rogue:
        return TlsConfig(ca=pki.ca, cert=pki.rogue_cert, key=pki.rogue_key)
    return TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key)


def make_transport(host: str, port: int, pki: Pki, prefix: str, **kwargs: Any) -> MqttTransport:
    return MqttTransport(
        host,
        port,
        client_id=f"dev-{new_ulid()}",
        tls=kwargs.pop("tls", client_tls(pki)),
        keepalive_s=10,
        will=(f"{prefix}/status", status_payload("offline")),
        reconnect_min_s=0.1,
        reconnect_max_s=1.0,
        **kwargs,
    )


def make_event(thing: str) -> Event:
    now = time.time()
    return Event(
        id=new_ulid(now),
        device=thing,
        camera="dock",
        rule="intrusion",
        phase=Phase.START,
        severity=Severity.HIGH,
        wall=now,
        mono=time.monotonic(),
        label="person",
        score=0.9,
        bbox=(0.1, 0.2, 0.3, 0.4),
        model=ModelRef("ssd_mobilenet_v2_coco", "7046f31a72ec"),
    )


@pytest.fixture
def prefix() -> str:
    # A topic tree per test keeps retained status messages from leaking between tests.
    return f"edge-app/t-{new_ulid().lower()}"


@contextmanager
def draining(outbox: Outbox, transport: MqttTransport, topic: str) -> Iterator[DrainLoop]:
    stop = threading.Event()
    drain = DrainLoop(
        outbox,
        transport,
        topic=topic,
        clock=SystemClock(),
        stop=stop,
        max_events=50,
        max_wait_s=0.05,
        ack_timeout_s=10.0,
        window=8,
    )
    thread = threading.Thread(target=drain.run, name="drain", daemon=True)
    thread.start()
    try:
        yield drain
    finally:
        stop.set()
        thread.join(WAIT_S)
        assert not thread.is_alive(), "drain loop did not stop"


def open_outbox(path: Path, thing: str) -> Outbox:
    return Outbox(
        path,
        clock=SystemClock(),
        device=thing,
        max_bytes=16 * 1024 * 1024,
        max_age_s=86400.0,
        encoder=encode_batch,
    )


def test_qos1_publish_over_mutual_tls_reaches_a_subscriber(
    broker: Mosquitto, pki: Pki, prefix: str
) -> None:
    status = f"{prefix}/status"
    with RecordingSubscriber(broker.host, broker.port, f"{prefix}/#") as cloud:
        with make_transport(broker.host, broker.tls_port, pki, prefix) as transport:
            assert wait_until(lambda: transport.is_connected)
            handle = transport.publish(f"{prefix}/events", b'{"hello":1}', qos=1)
            assert handle.wait(WAIT_S)
            assert handle.result is None
            assert wait_until(lambda: cloud.payloads(f"{prefix}/events") == [b'{"hello":1}'])
            assert wait_until(lambda: cloud.last_state(status) == "online")
        # A clean shutdown says "stopped", not the last will's "offline".
        assert wait_until(lambda: cloud.last_state(status) == "stopped")
    events = [m for m in cloud.messages() if m[0] == f"{prefix}/events"]
    assert events[0][2] == 1  # delivered with QoS 1


def test_status_is_online_then_offline_when_the_socket_dies(
    broker: Mosquitto, pki: Pki, prefix: str
) -> None:
    status = f"{prefix}/status"
    with TcpProxy(free_port(), broker.host, broker.tls_port) as proxy:
        proxy.up()
        transport = make_transport("127.0.0.1", proxy.listen_port, pki, prefix)
        changes: list[bool] = []
        transport.on_connection_change(changes.append)
        with transport:
            assert wait_until(lambda: transport.is_connected)
            with RecordingSubscriber(broker.host, broker.port, status) as cloud:
                assert wait_until(lambda: cloud.last_state(status) == "online")
                proxy.down()  # the link dies without a DISCONNECT: the broker sends the will
                assert wait_until(lambda: cloud.last_state(status) == "offline")
                assert wait_until(lambda: not transport.is_connected)
                failed = transport.publish(f"{prefix}/events", b"x")
                assert failed.done  # fails at once instead of disappearing
                assert isinstance(failed.result, UplinkError)
    assert changes[:2] == [True, False]


def test_boots_offline_then_delivers_every_stored_event_when_the_broker_starts(
    tmp_path: Path, pki: Pki, prefix: str
) -> None:
    try:
        own = Mosquitto(tmp_path / "broker", pki)
    except BrokerError as exc:
        pytest.skip(f"no Mosquitto broker: {exc}")
    topic = f"{prefix}/events"
    cloud_ready = threading.Event()

    def hold_until_the_cloud_listens(connected: bool) -> None:
        # Runs on paho's network thread, so nothing is sent while it waits: the subscriber
        # started after the broker cannot miss the first batches, whatever the timing.
        if connected:
            cloud_ready.wait(WAIT_S)

    with open_outbox(tmp_path / "outbox.db", "edge-test") as outbox:
        transport = make_transport(own.host, own.tls_port, pki, prefix)
        transport.on_connection_change(hold_until_the_cloud_listens)
        transport.connect()  # the broker is down: this must not raise
        try:
            with draining(outbox, transport, topic) as drain:
                store(outbox, drain, 300)
                assert not transport.is_connected
                assert transport.publish(topic, b"x").done  # failed at once, not queued
                assert outbox.stats().depth == 300

                own.start()
                with RecordingSubscriber(own.host, own.port, topic) as cloud:
                    cloud_ready.set()
                    assert wait_until(lambda: outbox.stats().depth == 0)
                    assert wait_until(lambda: _seen(cloud, topic) == set(range(1, 301)))

                # An outage after a working connection: it reconnects by itself.
                own.stop()
                cloud_ready.clear()
                assert wait_until(lambda: not transport.is_connected)
                store(outbox, drain, 100)
                own.start()
                with RecordingSubscriber(own.host, own.port, topic) as cloud:
                    cloud_ready.set()
                    assert wait_until(lambda: outbox.stats().depth == 0)
                    assert wait_until(lambda: _seen(cloud, topic) == set(range(301, 401)))
        finally:
            transport.disconnect()
            own.stop()
        assert drain.stats().events_sent == 400
        assert outbox.stats().last_seq == 400


def store(outbox: Outbox, drain: DrainLoop | None, count: int) -> None:
    for _ in range(count):
        outbox.enqueue(make_event("edge-test"))
        if drain is not None:
            drain.notify()


def _seen(cloud: RecordingSubscriber, topic: str) -> set[int]:
    return {e["seq"] for p in cloud.payloads(topic) for e in decode_batch(p)["events"]}


def test_a_rogue_certificate_never_connects_and_nothing_is_deleted(
    broker: Mosquitto,
    pki: Pki,
    prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = make_transport(
        broker.host, broker.tls_port, pki, prefix, tls=client_tls(pki, rogue=True)
    )
    changes: list[bool] = []
    transport.on_connection_change(changes.append)
    with open_outbox(tmp_path / "outbox.db", "edge-test") as outbox:
        for _ in range(5):
            outbox.enqueue(make_event("edge-test"))
        with transport, draining(outbox, transport, f"{prefix}/events"):
            assert wait_until(lambda: any(r.name == "edge_app.uplink.mqtt" for r in caplog.records))
            assert wait_until(lambda: len(_refusals(broker)) >= 2)  # it keeps trying
            assert not transport.is_connected
        stats = outbox.stats()
        assert (stats.depth, stats.last_seq, stats.leased) == (5, 5, 0)
    assert True not in changes
    key_text = pki.rogue_key.read_text()
    assert "PRIVATE KEY" not in caplog.text
    assert key_text.strip().splitlines()[1] not in caplog.text


def _refusals(broker: Mosquitto) -> list[str]:
    """Broker log lines of refused TLS connections (the transport keeps trying)."""
    return [
        line
        for line in broker.log_text().splitlines()
        if "OpenSSL Error" in line or "certificate verify failed" in line
    ]


def test_unreadable_tls_files_fail_connect_with_their_paths(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.key"
    transport = MqttTransport(
        "127.0.0.1",
        free_port(),
        client_id="dev-bad-tls",
        tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=missing),
    )
    with pytest.raises(UplinkError, match=r"nope\.key"):
        transport.connect()
    transport.disconnect()


def test_a_puback_failure_code_rejects_the_publish_and_keeps_the_batch(
    broker: Mosquitto, pki: Pki, tmp_path: Path
) -> None:
    # Mosquitto answers client publishes to $SYS with "Not authorized" (0x87) in the PUBACK.
    forbidden = "$SYS/edge-app-test/events"
    with MqttTransport(
        broker.host, broker.tls_port, client_id=f"dev-{new_ulid()}", tls=client_tls(pki)
    ) as transport:
        assert wait_until(lambda: transport.is_connected)
        handle = transport.publish(forbidden, b"{}")
        assert handle.wait(WAIT_S)
        assert isinstance(handle.result, PublishRejectedError)
        assert handle.result.code == 0x87

        with open_outbox(tmp_path / "outbox.db", "edge-test") as outbox:
            store(outbox, None, 3)
            drain = DrainLoop(
                outbox, transport, topic=forbidden, clock=SystemClock(), stop=threading.Event()
            )
            # A refusal counts once its PUBACK is back within the flush that sent the batch
            # (one still unanswered when a flush ends is released uncounted): half-second
            # steps, each long enough for a PUBACK from the local broker, as often as needed.
            assert flush_until(drain, lambda: drain.stats().publish_failures >= 1, step_s=0.5)
            stats = outbox.stats()
            assert (stats.depth, stats.leased) == (3, 0)
            assert drain.stats().events_sent == 0


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed by another thread meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_a_stopped_transport_holds_no_sockets(broker: Mosquitto, pki: Pki, prefix: str) -> None:
    """paho keeps loop_start()'s socket pair until garbage collection; a reference cycle makes
    that late and unordered (a stray ResourceWarning in an unrelated test). disconnect() closes
    it: with the collector off, three connect/disconnect rounds leave no socket behind."""
    gc.collect()
    gc.disable()
    try:
        before = _open_sockets()
        for _ in range(3):
            with make_transport(broker.host, broker.tls_port, pki, prefix) as transport:
                assert wait_until(lambda: transport.is_connected)
        # <=: a thread left by an earlier test may close a socket meanwhile; a leak adds two
        assert _open_sockets() <= before
    finally:
        gc.enable()


def test_plain_tcp_must_be_asked_for_explicitly() -> None:
    with pytest.raises(ValueError, match="insecure_plaintext=True"):
        MqttTransport("127.0.0.1", free_port(), client_id="dev-no-tls")


def test_tls_and_plaintext_together_are_a_contradiction(pki: Pki) -> None:
    with pytest.raises(ValueError, match="tls=None with insecure_plaintext"):
        MqttTransport(
            "127.0.0.1",
            free_port(),
            client_id="dev-both",
            tls=client_tls(pki),
            insecure_plaintext=True,
        )


def test_plain_tcp_opted_into_connects_and_warns(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="edge_app.uplink.mqtt")
    transport = MqttTransport(
        broker.host, broker.port, client_id=f"dev-{new_ulid()}", insecure_plaintext=True
    )
    with transport:
        assert wait_until(lambda: transport.is_connected)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "NOT encrypted" in warnings[0].getMessage()
    assert f"{broker.host}:{broker.port}" in warnings[0].getMessage()
    assert "uplink.tls" in warnings[0].getMessage()


def test_tls_connections_log_no_plaintext_warning(
    broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="edge_app.uplink.mqtt")
    transport = MqttTransport(
        broker.host, broker.tls_port, client_id=f"dev-{new_ulid()}", tls=client_tls(pki)
    )
    with transport:
        assert wait_until(lambda: transport.is_connected)
    assert "NOT encrypted" not in caplog.text
