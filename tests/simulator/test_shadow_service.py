"""The shadow-service emulator against a real Mosquitto, and ``python -m simulator shadow set``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.clock import SystemClock
from edge_app.config import LastGoodStore, TlsConfig, merge_delta
from edge_app.remote import ShadowClient, ShadowHandler, ShadowTopics
from edge_app.uplink import MqttTransport, stop_network_loop
from simulator.__main__ import main as simulator_main
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.shadow import ShadowService, delta_of
from simulator.shadow_cli import desired_from_pairs
from tests.config.test_remote_overlay import MODELS, local_config
from tests.factories import wait_until
from tests.fakes import RecordingApplier

WAIT_S = 15.0


def test_desired_from_pairs_nests_dotted_keys() -> None:
    got = desired_from_pairs(["detector.score_threshold=0.7", "detector.model=ssd_x", "rules=[]"])
    assert got == {"detector": {"score_threshold": 0.7, "model": "ssd_x"}, "rules": []}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        desired_from_pairs(["novalue"])


def test_merge_and_delta_follow_aws_semantics() -> None:
    state = merge_delta({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]})
    assert state == {"a": {"c": 2, "e": 3}, "d": [2]}
    assert delta_of({"a": {"c": 2, "e": 3}, "f": 1}, {"a": {"c": 2}, "f": 1}) == {"a": {"e": 3}}


class Peer:
    """A plain MQTT client that records what arrives on the shadow's response topics."""

    def __init__(self, broker: Mosquitto, thing: str) -> None:
        self.topics = ShadowTopics(thing)
        self.got: list[tuple[str, dict[str, object]]] = []
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda c, *_: c.subscribe(self.topics.prefix + "/+/+", qos=1)
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = lambda c, u, m: self.got.append((m.topic, json.loads(m.payload)))
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert self._ready.wait(WAIT_S)

    def send(self, suffix: str, body: object) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._client.publish(self.topics.prefix + suffix, payload, qos=1).wait_for_publish(5)

    def on(self, suffix: str) -> list[dict[str, object]]:
        return [b for t, b in list(self.got) if t == self.topics.prefix + suffix]

    def close(self) -> None:
        self._client.disconnect()
        stop_network_loop(self._client)


@pytest.fixture
def service(broker: Mosquitto) -> Iterator[ShadowService]:
    with ShadowService(broker.host, broker.port, client_id=f"svc-{time.monotonic_ns()}") as s:
        yield s


@pytest.mark.broker
def test_service_speaks_the_shadow_protocol(broker: Mosquitto, service: ShadowService) -> None:
    peer = Peer(broker, "svc-1")
    try:
        peer.send("/get", b"")
        assert wait_until(lambda: bool(peer.on("/get/rejected")))
        assert peer.on("/get/rejected")[0]["code"] == 404
        peer.send("/update", {"state": {"desired": {"x": {"y": 1}}}, "clientToken": "t1"})
        assert wait_until(lambda: bool(peer.on("/update/delta")))
        delta = peer.on("/update/delta")[0]
        assert (delta["state"], delta["version"], delta["clientToken"]) == (
            {"x": {"y": 1}},
            1,
            "t1",
        )
        peer.send("/update", {"state": {"reported": {"x": {"y": 1}}}, "version": 7})
        assert wait_until(lambda: bool(peer.on("/update/rejected")))
        assert peer.on("/update/rejected")[0]["code"] == 409
        peer.send("/update", {"state": {"reported": {"x": {"y": 1}}}, "version": 1})
        assert wait_until(lambda: len(peer.on("/update/accepted")) == 2)
        assert len(peer.on("/update/delta")) == 1  # a report alone raises no delta
        peer.send("/update", b"x" * 9000)
        assert wait_until(lambda: any(r["code"] == 413 for r in peer.on("/update/rejected")))
        peer.send("/get", b"")
        assert wait_until(lambda: bool(peer.on("/get/accepted")))
        doc = peer.on("/get/accepted")[0]
        assert doc["version"] == 2
        assert doc["state"] == {"desired": {"x": {"y": 1}}, "reported": {"x": {"y": 1}}}
    finally:
        peer.close()


@pytest.mark.broker
def test_shadow_set_command_reaches_a_device_and_prints_its_report(
    broker: Mosquitto,
    pki: Pki,
    service: ShadowService,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local = local_config(tmp_path)
    applier = RecordingApplier(local)
    handler = ShadowHandler(
        local, applier, LastGoodStore(tmp_path), models=MODELS, clock=SystemClock()
    )
    stop = threading.Event()
    transport = MqttTransport(
        broker.host,
        broker.tls_port,
        client_id="cli-device",
        tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key),
    )
    client = ShadowClient(transport, handler, "cli-1", stop=stop)
    client.attach()
    worker = threading.Thread(target=client.run)
    worker.start()
    try:
        with transport:
            assert wait_until(lambda: service.requests >= 1)
            code = simulator_main(
                [
                    "shadow",
                    "set",
                    "--host",
                    broker.host,
                    "--port",
                    str(broker.port),
                    "--thing",
                    "cli-1",
                    "detector.score_threshold=0.66",
                ]
            )
    finally:
        stop.set()
        worker.join()
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["report"]["status"] == "applied"
    assert out["report"]["version"] == out["version"]
    assert applier.current().config.detector.score_threshold == 0.66


@pytest.mark.broker
def test_service_deletes_shadows_as_aws_does(broker: Mosquitto) -> None:
    peer = Peer(broker, "svc-del")
    forgetful = ShadowService(
        broker.host, broker.port, client_id="svc-forgetful", deleted_version_memory_s=0.0
    )
    try:
        with ShadowService(broker.host, broker.port, client_id="svc-remembers") as service:
            service.set_desired("svc-del", {"x": 1})
            service.set_desired("svc-del", {"x": 2})
            peer.send("/delete", {"clientToken": "d1"})
            assert wait_until(lambda: bool(peer.on("/delete/accepted")))
            answer = peer.on("/delete/accepted")[0]
            assert (answer["version"], answer["clientToken"]) == (2, "d1")
            assert isinstance(answer["timestamp"], int)
            assert service.document("svc-del") is None
            peer.send("/get", {"clientToken": "g1"})
            assert wait_until(lambda: bool(peer.on("/get/rejected")))
            assert peer.on("/get/rejected")[0]["code"] == 404
            peer.send("/delete", {"clientToken": "d2"})
            assert wait_until(lambda: bool(peer.on("/delete/rejected")))
            assert peer.on("/delete/rejected")[0]["code"] == 404
            assert service.delete("svc-del") is None
            # re-created within AWS's 48 hours: versions continue from the deleted shadow's
            assert service.set_desired("svc-del", {"y": 1}) == 3
            doc = service.document("svc-del")
            assert doc is not None
            assert (doc["version"], doc["state"]) == (
                3,
                {"desired": {"y": 1}, "reported": {}, "delta": {"y": 1}},
            )
        with forgetful as service:
            assert service.set_desired("svc-del2", {"x": 1}) == 1
            assert service.delete("svc-del2") == 1
            # re-created after AWS forgot it: versions start again
            assert service.set_desired("svc-del2", {"x": 1}) == 1
    finally:
        peer.close()


@pytest.mark.broker
def test_service_refuses_a_state_over_8_kb(broker: Mosquitto, service: ShadowService) -> None:
    peer = Peer(broker, "svc-big")
    try:
        service.set_desired("svc-big", {"a": "x" * 5000})
        peer.send("/update", {"state": {"reported": {"b": "y" * 4000}}, "clientToken": "big"})
        assert wait_until(lambda: bool(peer.on("/update/rejected")))
        assert peer.on("/update/rejected")[0]["code"] == 413
        doc = service.document("svc-big")
        assert doc is not None
        assert (doc["version"], doc["state"]["reported"]) == (1, {})
        peer.send("/update", {"state": {"reported": {"b": "y" * 2000}}})
        assert service.wait_for(lambda d: d["version"] == 2, "svc-big", WAIT_S)
    finally:
        peer.close()


@pytest.mark.broker
def test_shadow_delete_command(
    broker: Mosquitto, service: ShadowService, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["shadow", "delete", "--host", broker.host, "--port", str(broker.port)]
    command += ["--thing", "cli-del", "--timeout", str(WAIT_S)]
    service.set_desired("cli-del", {"x": 1})
    assert simulator_main(command) == 0
    assert "deleted at version 1" in capsys.readouterr().out
    assert service.document("cli-del") is None
    assert simulator_main(command) == 1
    assert "404" in capsys.readouterr().out
