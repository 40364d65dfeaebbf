"""The test broker behaves like IoT Core where it matters: mutual TLS admits only CA-signed
client certificates, QoS 1 works end to end, and restarts keep the address."""

from __future__ import annotations

import gc
import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_app.uplink import stop_network_loop
from simulator.broker import BrokerError, Mosquitto, free_port
from simulator.certs import Pki

WAIT_S = 10.0


@dataclass
class Probe:
    """Events a test waits on (bounded), filled in by paho's callbacks."""

    connected: threading.Event = field(default_factory=threading.Event)
    failed: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    published: threading.Event = field(default_factory=threading.Event)
    received: threading.Event = field(default_factory=threading.Event)
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    connect_codes: list[ReasonCode] = field(default_factory=list)


def _client(probe: Probe, name: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=name,
        protocol=MQTTProtocolVersion.MQTTv5,
        reconnect_on_failure=False,
    )

    def on_connect(
        _c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Properties | None
    ) -> None:
        probe.connect_codes.append(code)
        (probe.failed if code.is_failure else probe.connected).set()

    def on_disconnect(
        _c: mqtt.Client, _u: Any, _f: Any, _code: ReasonCode, _p: Properties | None
    ) -> None:
        probe.failed.set()

    def on_connect_fail(_c: mqtt.Client, _u: Any) -> None:
        probe.failed.set()

    def on_subscribe(
        _c: mqtt.Client, _u: Any, _mid: int, _codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        probe.subscribed.set()

    def on_publish(
        _c: mqtt.Client, _u: Any, _mid: int, _code: ReasonCode, _p: Properties | None
    ) -> None:
        probe.published.set()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        probe.messages.append(message)
        probe.received.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_connect_fail = on_connect_fail
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    client.on_message = on_message
    return client


def _tls(
    pki: Pki, cert: Path | None, key: Path | None, max_version: ssl.TLSVersion | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    if max_version is not None:
        context.maximum_version = max_version
    return context


@contextmanager
def _session(
    probe: Probe, name: str, port: int, context: ssl.SSLContext | None = None
) -> Iterator[mqtt.Client]:
    """A connected-or-refused client with its network loop running; always torn down."""
    client = _client(probe, name)
    if context is not None:
        client.tls_set_context(context)
    refused = False
    # paho 2.2 does not close its socket when the TLS handshake fails inside connect(); the
    # ResourceWarning of that leak (paho's, not ours) is collected here rather than surfacing
    # later as an unraisable-exception error in an unrelated test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client.connect("127.0.0.1", port, keepalive=30)
        except (ssl.SSLError, OSError):
            # With TLS 1.2 a refused client certificate aborts the handshake inside connect().
            refused = True
        gc.collect()
    if refused:
        probe.failed.set()
        yield client
        return
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        stop_network_loop(client)


def _round_trip(client: mqtt.Client, probe: Probe, topic: str) -> None:
    assert probe.connected.wait(WAIT_S), f"no CONNACK; connect codes {probe.connect_codes}"
    client.subscribe(topic, qos=1)
    assert probe.subscribed.wait(WAIT_S), "no SUBACK"
    info = client.publish(topic, b'{"seq": 1}', qos=1)
    assert probe.published.wait(WAIT_S), "no PUBACK for the QoS 1 publish"
    assert info.is_published()
    assert probe.received.wait(WAIT_S), "subscribed message never arrived"
    message = probe.messages[0]
    assert (message.topic, message.payload, message.qos) == (topic, b'{"seq": 1}', 1)


def test_ca_signed_client_round_trips_qos1_over_mutual_tls(broker: Mosquitto, pki: Pki) -> None:
    probe = Probe()
    context = _tls(pki, pki.client_cert, pki.client_key)
    with _session(probe, "tls-ok", broker.tls_port, context) as client:
        _round_trip(client, probe, "edge-app/edge-test/events")


def test_tls_listener_uses_certificate_cn_as_username(broker: Mosquitto, pki: Pki) -> None:
    probe = Probe()
    context = _tls(pki, pki.client_cert, pki.client_key)
    with _session(probe, "tls-cn", broker.tls_port, context):
        assert probe.connected.wait(WAIT_S)
    # Mosquitto logs "New client connected ... as tls-cn (p5, c1, k30, u'edge-test')." before
    # it sends CONNACK, and flushes each line, so the line is there once we are connected.
    connected_lines = [line for line in broker.log_text().splitlines() if " as tls-cn " in line]
    assert connected_lines, broker.log_text()
    assert "u'edge-test'" in connected_lines[-1]


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, None], ids=["tls1.2", "tls-max"])
@pytest.mark.parametrize("cert_kind", ["none", "rogue"])
def test_tls_listener_refuses_clients_without_a_ca_signed_certificate(
    broker: Mosquitto, pki: Pki, cert_kind: str, max_version: ssl.TLSVersion | None
) -> None:
    if cert_kind == "rogue":
        context = _tls(pki, pki.rogue_cert, pki.rogue_key, max_version)
    else:
        context = _tls(pki, None, None, max_version)
    probe = Probe()
    with _session(probe, f"refused-{cert_kind}", broker.tls_port, context):
        # Under TLS 1.3 the client finishes its half of the handshake before the server
        # checks the certificate, so the refusal arrives as a dropped connection instead.
        assert probe.failed.wait(WAIT_S), "the broker neither refused nor dropped the client"
    assert not probe.connected.is_set()


def test_plain_listener_accepts_anonymous_clients(broker: Mosquitto) -> None:
    probe = Probe()
    with _session(probe, "plain", broker.port) as client:
        _round_trip(client, probe, "edge-app/edge-test/status")


def test_restart_keeps_ports_and_serves_again(broker: Mosquitto, pki: Pki, tmp_path: Path) -> None:
    # A broker of its own, so the session broker's clients see no outage; ``broker`` is
    # requested only for its skip-or-fail handling when mosquitto is missing.
    with Mosquitto(tmp_path, pki) as own:
        ports = (own.port, own.tls_port)
        own.restart()
        assert own.is_running
        assert (own.port, own.tls_port) == ports
        probe = Probe()
        with _session(probe, "after-restart", own.port) as client:
            _round_trip(client, probe, "edge-app/edge-test/metrics")
    assert not own.is_running
    assert own.log_text().count("running") == 2  # both starts are kept in the log


def test_start_failure_reports_mosquittos_log(broker: Mosquitto, tmp_path: Path) -> None:
    # The session broker holds broker.port, so a second broker cannot bind it.
    clash = Mosquitto(tmp_path, port=broker.port)
    with pytest.raises(BrokerError, match=r"(?s)exited during startup.*[Aa]ddress already in use"):
        clash.start()
    assert not clash.is_running


def test_tls_port_without_pki_is_a_clear_error(broker: Mosquitto, tmp_path: Path) -> None:
    plain = Mosquitto(tmp_path)
    with pytest.raises(BrokerError, match="construct it with a Pki"):
        _ = plain.tls_port
    with pytest.raises(BrokerError, match="without a Pki"):
        Mosquitto(tmp_path, tls_port=free_port())
