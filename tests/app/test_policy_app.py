"""The least-privilege policy is enough for the real daemon: on a broker enforcing it
(``policy_broker``), the app delivers events, status and snapshots, and applies a remote config
through its shadow, as thing-a with thing-a's certificate. Nothing it needs is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge_app.aws import MqttProbe
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.cloud import CloudConsumer
from simulator.scene import SceneTruth
from simulator.shadow import ShadowService
from tests.app.test_remote_config import RULES_AFTER, RecordingApp, config_for, model_dir
from tests.app.test_remote_config import reported as reported_config
from tests.factories import wait_until

pytestmark = pytest.mark.broker

WAIT_S = 30.0


def test_the_daemon_works_within_the_policy(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    policy_broker: Mosquitto,
    fleet: dict[str, Pki],
) -> None:
    clip, _ = scene
    config = config_for(
        tmp_path,
        clip,
        model_dir(tmp_path, default_model),
        policy_broker.tls_port,
        fleet["thing-a"],
        thing="thing-a",
    )
    delivered: list[dict[str, Any]] = []
    cloud = CloudConsumer(
        policy_broker.host,
        policy_broker.port,
        topic="edge-app/thing-a/events",
        client_id="policy-cloud",
    )
    cloud.on_batch = lambda batch: delivered.extend(batch["events"])
    status = MqttProbe(
        policy_broker.host, policy_broker.port, client_id="policy-status", context=None
    )
    shadow = ShadowService(
        policy_broker.host, policy_broker.port, client_id=f"policy-shadow-{time.monotonic_ns()}"
    )
    topic = "edge-app/thing-a/status"
    late = MqttProbe(policy_broker.host, policy_broker.port, client_id="policy-late", context=None)
    with cloud, shadow, status, late:
        assert status.connect().ok
        # Another test's daemon, also thing-a on this session broker, left its retained
        # "stopped": cleared, so the first status seen here is this daemon's.
        assert status.publish(topic, b"", retain=True).ok
        assert status.subscribe("edge-app/thing-a/#").ok
        with RecordingApp(config) as app:
            assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
            # a subscriber arriving later gets the birth message retained (iot:RetainPublish)
            assert status.wait_message(lambda t, p: t == topic and b"online" in p, WAIT_S)
            assert late.connect().ok
            assert late.subscribe(topic).ok
            assert late.wait_message(lambda t, p: t == topic and b"online" in p, WAIT_S)
            version = shadow.set_desired("thing-a", {"rules": RULES_AFTER})
            assert shadow.wait_for(
                lambda d: reported_config(d).get("version") == version, "thing-a", WAIT_S
            )
            app.wait()
            stats = app.stats()
            assert cloud.audit.wait_for_seq(stats.last_seq, timeout=WAIT_S)
            assert wait_until(
                lambda: any("/snapshots/" in t for t, _ in status.messages), timeout=WAIT_S
            )
    states = [json.loads(p)["state"] for t, p in status.messages if t == topic and p]
    assert states[0] == "online"  # its birth message, first
    assert {e["rule"] for e in delivered if e["rule"] != "config"} == {"anyone"}
    assert any(e["rule"] == "config" and e["label"] == "applied" for e in delivered)
    assert not any(o.errors for o in app.outcomes)
