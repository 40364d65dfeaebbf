"""Remote configuration end to end: the real app (mutual TLS), a real clip and model, the
shadow emulator on a real Mosquitto (plain listener), and MqttTransport subscriptions across
reconnects."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.app import EdgeApp
from edge_app.config import AppConfig, TlsConfig, parse_config
from edge_app.models import Catalog, ModelSpec, load_manifest
from edge_app.remote import Outcome, ShadowTopics
from edge_app.uplink import MqttTransport, stop_network_loop
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.cloud import CloudConsumer
from simulator.proxy import TcpProxy
from simulator.scene import SceneTruth
from simulator.shadow import ShadowService
from tests.app.test_app import tls
from tests.factories import wait_until
from tests.simulator.test_shadow_service import Peer

pytestmark = pytest.mark.broker

WAIT_S = 20.0
RULES_BEFORE = [{"name": "animal", "labels": ["cat"], "min_score": 0.5, "min_frames": 2}]
RULES_AFTER = [
    {
        "name": "anyone",
        "labels": ["person", "cat", "motorcycle"],
        "min_score": 0.5,
        "min_frames": 2,
        "end_after_s": 1.0,
    }
]


class RecordingApp(EdgeApp):
    """EdgeApp that keeps every remote-config outcome (the app's test hook)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[Outcome] = []

    def on_config_outcome(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def model_dir(tmp: Path, default_model: Path) -> Path:
    """A model cache holding the default model under its manifest file name."""
    cache = tmp / "models"
    cache.mkdir(exist_ok=True)
    link = cache / default_model.name
    if not link.exists():
        link.symlink_to(default_model)
    return cache


def config_for(
    tmp: Path, clip: Path, cache: Path, port: int, pki: Pki, *, thing: str, realtime: bool = True
) -> AppConfig:
    """The device on ``port`` of a mutual-TLS listener, with the session's client certificate."""
    return parse_config(
        {
            "device": {"thing_name": thing, "data_dir": str(tmp / "data")},
            "cameras": [
                {
                    "name": "yard",
                    "source": {
                        "type": "file",
                        "path": str(clip),
                        "realtime": realtime,
                        "speed": 4.0,
                    },
                }
            ],
            "detector": {
                "model": "ssd_mobilenet_v2_coco",
                "model_dir": str(cache),
                "score_threshold": 0.4,
            },
            "rules": RULES_BEFORE,
            "uplink": {
                "host": "127.0.0.1",
                "port": port,
                "tls": tls(pki),
                "reconnect": {"min_s": 0.1, "max_s": 0.5},
                "batch": {"max_wait_s": 0.05},
            },
            "log_level": "warning",
        }
    )


def reported(doc: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = doc["state"].get("reported", {}).get("config", {})
    return config


@pytest.fixture
def shadow(broker: Mosquitto) -> Iterator[ShadowService]:
    with ShadowService(broker.host, broker.port, client_id=f"shadow-{time.monotonic_ns()}") as s:
        yield s


def test_change_applies_while_a_clip_runs_and_events_follow(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, truth = scene
    config = config_for(
        tmp_path, clip, model_dir(tmp_path, default_model), broker.tls_port, pki, thing="rc-1"
    )
    delivered: list[dict[str, Any]] = []
    cloud = CloudConsumer(
        broker.host, broker.port, topic="edge-app/rc-1/events", client_id="cloud-rc-1"
    )
    cloud.on_batch = lambda batch: delivered.extend(batch["events"])
    with cloud, RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
        assert wait_until(lambda: app.stats().frames >= 10)
        version = shadow.set_desired(
            "rc-1",
            {
                "rules": RULES_AFTER,
                "detector": {"score_threshold": 0.45},
                "cameras": {
                    "yard": {
                        "zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]
                    }
                },
            },
        )
        assert shadow.wait_for(lambda d: reported(d).get("version") == version, "rc-1", WAIT_S)
        adopted_at = app.stats().cameras["yard"].frames
        app.wait()
        stats = app.stats()
        snap = app.snapshot
        assert cloud.audit.wait_for_seq(stats.last_seq, timeout=WAIT_S)
    doc = shadow.document("rc-1")
    assert doc is not None
    assert reported(doc) == {
        "version": version,
        "digest": snap.digest,
        "source": "remote",
        "model": {"name": "ssd_mobilenet_v2_coco", "sha256": "7046f31a72ec"},
        "status": "applied",
        "rejected_version": None,
        "errors": None,
        "more_errors": None,
    }
    assert "delta" not in doc["state"]  # everything desired is reported back
    assert snap.config.detector.score_threshold == 0.45
    # no restart: every frame of the clip went through the one running loop
    assert stats.cameras["yard"].frames == truth.frames
    assert stats.cameras["yard"].config_version == version
    assert 10 <= adopted_at < truth.frames
    events = [e for e in delivered if e["rule"] != "config"]
    before = {e["rule"] for e in events if e["config_version"] == 0}
    after = {e["rule"] for e in events if e["config_version"] == version}
    assert before <= {"animal"}
    assert after == {"anyone"}
    assert {e["label"] for e in events if e["config_version"] == version} >= {"person"}
    audit = [e for e in delivered if e["rule"] == "config"]
    assert [(a["phase"], a["label"], a["config"]["version"]) for a in audit] == [
        ("update", "applied", version)
    ]
    assert json.loads((tmp_path / "data" / "remote-config.json").read_text())["version"] == version


def test_forbidden_change_is_rejected_with_reasons_and_nothing_changes(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    config = config_for(
        tmp_path, clip, model_dir(tmp_path, default_model), broker.tls_port, pki, thing="rc-2"
    )
    with RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
        before = app.snapshot
        version = shadow.set_desired(
            "rc-2", {"uplink": {"host": "evil.example"}, "detector": {"score_threshold": 3}}
        )
        assert shadow.wait_for(
            lambda d: reported(d).get("rejected_version") == version, "rc-2", WAIT_S
        )
        assert app.snapshot is before
        doc = shadow.document("rc-2")
        app.request_stop()
    assert doc is not None
    report = reported(doc)
    assert report["status"] == "rejected"
    assert report["version"] is None  # still the local file: nothing remote applied
    assert {e["field"] for e in report["errors"]} == {"uplink.host", "detector.score_threshold"}
    assert all(e["reason"] for e in report["errors"])
    assert not (tmp_path / "data" / "remote-config.json").exists()


def test_out_of_order_and_duplicate_deltas_are_decided_by_version(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    config = config_for(
        tmp_path, clip, model_dir(tmp_path, default_model), broker.tls_port, pki, thing="rc-3"
    )
    topic = ShadowTopics("rc-3").update_delta

    def delta(version: int, threshold: float) -> bytes:
        state = {"detector": {"score_threshold": threshold}}
        return json.dumps({"state": state, "version": version}).encode()

    with RecordingApp(config) as app:
        # The connect-time get reached the service, so the device's subscriptions (sent
        # before it) are in place; it finds no shadow (404): nothing applied.
        assert wait_until(lambda: shadow.requests >= 1)
        for payload in (
            delta(50, 0.6),
            delta(50, 0.6),
            delta(40, 0.3),
            delta(51, 0.7),
            delta(45, 0.2),
        ):
            shadow.publish_raw(topic, payload)
        assert wait_until(lambda: len(app.outcomes) == 5), app.outcomes
        statuses = [(o.status, o.version) for o in app.outcomes]
        threshold = app.snapshot.config.detector.score_threshold
        app.request_stop()
    assert statuses == [
        ("applied", 50),
        ("stale", 50),
        ("stale", 40),
        ("applied", 51),
        ("stale", 45),
    ]
    assert threshold == 0.7


def test_reboot_with_broker_down_runs_last_good(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    cache = model_dir(tmp_path, default_model)
    config = config_for(tmp_path, clip, cache, broker.tls_port, pki, thing="rc-4")
    with RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
        version = shadow.set_desired("rc-4", {"detector": {"score_threshold": 0.77}})
        assert wait_until(lambda: app.snapshot.remote_version == version)
        applied = app.snapshot
        app.request_stop()
    offline = config_for(tmp_path, clip, cache, free_port(), pki, thing="rc-4", realtime=False)
    app = RecordingApp(offline)
    app.start()
    try:
        app.wait()
        snap = app.snapshot
        stats = app.stats()
    finally:
        app.stop(flush_timeout_s=0.0)  # the broker is down: nothing to wait for
    assert not stats.uplink_connected
    assert snap.source == "last-good"
    assert snap.remote_version == version
    # the same overlay on a local file that differs only in broker port and pacing
    assert snap.config.detector == applied.config.detector
    assert snap.config.detector.score_threshold == 0.77
    assert stats.cameras["yard"].config_version == version


def test_switch_to_a_broken_model_is_rejected_and_the_old_keeps_running(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    cache = model_dir(tmp_path, default_model)
    # a manifest entry whose file passes its checksum but is not a working model
    broken = default_model.read_bytes()[:200_000]
    (cache / "broken.tflite").write_bytes(broken)
    real = load_manifest()
    spec = ModelSpec.model_validate(
        {
            **real.default_spec().model_dump(),
            "name": "broken_model",
            "file": "broken.tflite",
            "sha256": hashlib.sha256(broken).hexdigest(),
            "bytes": len(broken),
        }
    )
    catalog = Catalog(path=real.path, models=(*real.models, spec), default=real.default)
    config = config_for(tmp_path, clip, cache, broker.tls_port, pki, thing="rc-5")
    with RecordingApp(config, catalog=catalog) as app:
        assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
        version = shadow.set_desired("rc-5", {"detector": {"model": "broken_model"}})
        assert shadow.wait_for(
            lambda d: reported(d).get("rejected_version") == version, "rc-5", WAIT_S
        )
        frames = app.stats().frames
        assert wait_until(lambda: app.stats().frames > frames + 5)  # still detecting
        model = app.runtime.detector.model.name
        doc = shadow.document("rc-5")
        snap = app.snapshot
        app.request_stop()
    assert doc is not None
    errors = reported(doc)["errors"]
    assert [e["field"] for e in errors] == ["detector.model"]
    assert "broken" in errors[0]["reason"]
    assert model == "ssd_mobilenet_v2_coco"
    assert snap.config.detector.model == "ssd_mobilenet_v2_coco"
    assert snap.remote_version is None


def test_mqtt_transport_subscriptions_survive_a_reconnect(broker: Mosquitto, pki: Pki) -> None:
    got: list[tuple[str, bytes]] = []
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        with lock:
            got.append((topic, payload))

    sender = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    with TcpProxy(free_port(), broker.host, broker.tls_port) as network:
        network.up()
        transport = MqttTransport(
            "127.0.0.1",
            network.listen_port,
            client_id="sub-reconnect",
            tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key),
            reconnect_min_s=0.1,
            reconnect_max_s=0.3,
        )
        transport.subscribe("$aws/things/t/shadow/name/edge-config/update/delta", on_message)
        with transport:
            assert wait_until(lambda: transport.is_connected)

            def deliver(body: bytes) -> bool:
                def arrived() -> bool:
                    sender.publish(
                        "$aws/things/t/shadow/name/edge-config/update/delta", body, qos=1
                    )
                    with lock:
                        return any(p == body for _, p in got)

                return wait_until(arrived)

            assert deliver(b"one")
            network.down()
            assert wait_until(lambda: not transport.is_connected)
            network.up()
            assert wait_until(lambda: transport.is_connected)
            assert deliver(b"two")
    sender.disconnect()
    stop_network_loop(sender)


# -- the version bar, shadow deletion, bounded rejection reports -----------------------------

HUGE = 2**62  # a valid shadow version, far above any real one


def huge_delta(threshold: float | None = None) -> bytes:
    """A delta at version HUGE: valid with a threshold, invalid (broker address) without."""
    state: dict[str, Any] = (
        {"detector": {"score_threshold": threshold}}
        if threshold is not None
        else {"uplink": {"host": "evil.example"}}
    )
    return json.dumps({"state": state, "version": HUGE}).encode()


def outcome_of(app: RecordingApp, version: int) -> str | None:
    return next((o.status for o in app.outcomes if o.version == version), None)


def test_a_rejected_huge_version_does_not_freeze_remote_config(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    config = config_for(
        tmp_path, clip, model_dir(tmp_path, default_model), broker.tls_port, pki, thing="rc-6"
    )
    with RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
        shadow.publish_raw(ShadowTopics("rc-6").update_delta, huge_delta())
        assert wait_until(lambda: outcome_of(app, HUGE) == "rejected")
        version = shadow.set_desired("rc-6", {"detector": {"score_threshold": 0.66}})
        assert shadow.wait_for(lambda d: reported(d).get("version") == version, "rc-6", WAIT_S)
        # the report is published before the outcome hook runs: wait for the hook too
        assert wait_until(lambda: outcome_of(app, version) == "applied")
        assert app.snapshot.config.detector.score_threshold == 0.66
        app.request_stop()


def test_shadow_deletion_resets_the_version_bar_live_and_across_restarts(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
) -> None:
    clip, _ = scene
    config = config_for(
        tmp_path, clip, model_dir(tmp_path, default_model), broker.tls_port, pki, thing="rc-7"
    )
    topic = ShadowTopics("rc-7").update_delta
    # versions of a re-created shadow start again at 1 (AWS: deleted more than 48 h ago)
    service = ShadowService(
        broker.host, broker.port, client_id="shadow-rc-7", deleted_version_memory_s=0.0
    )
    peer = Peer(broker, "rc-7")
    with service:
        with RecordingApp(config) as app:
            assert wait_until(lambda: service.requests >= 1)
            # a huge but valid version is applied and holds: real versions are now stale
            shadow_v = service.set_desired("rc-7", {"detector": {"score_threshold": 0.6}})
            assert wait_until(lambda: outcome_of(app, shadow_v) == "applied")
            service.publish_raw(topic, huge_delta(0.7))
            assert wait_until(lambda: outcome_of(app, HUGE) == "applied")
            stale_v = service.set_desired("rc-7", {"detector": {"score_threshold": 0.61}})
            assert wait_until(lambda: outcome_of(app, stale_v) == "stale")
            # deleted while the device listens: delete/accepted resets the bar
            assert service.delete("rc-7") is not None
            v1 = service.set_desired("rc-7", {"detector": {"score_threshold": 0.5}})
            assert v1 == 1
            assert service.wait_for(lambda d: reported(d).get("version") == 1, "rc-7", WAIT_S)
            assert app.snapshot.config.detector.score_threshold == 0.5
            service.publish_raw(topic, huge_delta(0.8))
            assert wait_until(lambda: app.snapshot.remote_version == HUGE)
            app.request_stop()
        # deleted while the device is off: it boots on last-good, its get is answered 404
        assert service.delete("rc-7") is not None
        with RecordingApp(config) as app:
            assert (app.snapshot.source, app.snapshot.remote_version) == ("last-good", HUGE)
            assert wait_until(lambda: any(b.get("code") == 404 for b in peer.on("/get/rejected")))
            assert app.snapshot.config.detector.score_threshold == 0.8  # kept meanwhile
            service.set_desired("rc-7", {"detector": {"score_threshold": 0.45}})
            assert service.wait_for(lambda d: reported(d).get("version") == 1, "rc-7", WAIT_S)
            assert app.snapshot.config.detector.score_threshold == 0.45
            service.publish_raw(topic, huge_delta(0.9))
            assert wait_until(lambda: app.snapshot.remote_version == HUGE)
            app.request_stop()
        # deleted and re-created while the device is off: its get is answered at v1 < HUGE
        assert service.delete("rc-7") is not None
        assert service.set_desired("rc-7", {"detector": {"score_threshold": 0.3}}) == 1
        with RecordingApp(config) as app:
            assert service.wait_for(lambda d: reported(d).get("version") == 1, "rc-7", WAIT_S)
            snap = app.snapshot
            app.request_stop()
    peer.close()
    assert (snap.remote_version, snap.config.detector.score_threshold) == (1, 0.3)
    stored = json.loads((tmp_path / "data" / "remote-config.json").read_text())
    assert stored["version"] == 1


def test_a_rejection_of_700_bad_keys_reaches_the_shadow_and_the_cloud(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    config = config_for(
        tmp_path, clip, model_dir(tmp_path, default_model), broker.tls_port, pki, thing="rc-8"
    )
    delivered: list[dict[str, Any]] = []
    cloud = CloudConsumer(
        broker.host, broker.port, topic="edge-app/rc-8/events", client_id="cloud-rc-8"
    )
    cloud.on_batch = lambda batch: delivered.extend(batch["events"])
    with cloud, RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)
        bad = {f"k{i:03d}": 1 for i in range(700)}  # ~6 KB of desired state
        version = shadow.set_desired("rc-8", bad)
        assert shadow.wait_for(
            lambda d: reported(d).get("rejected_version") == version, "rc-8", WAIT_S
        )
        assert wait_until(
            lambda: any(e["rule"] == "config" and e["label"] == "rejected" for e in delivered)
        )
        dead = app.outbox.dead_letters()
        doc = shadow.document("rc-8")
        app.request_stop()
    assert doc is not None
    report = reported(doc)
    assert report["status"] == "rejected"
    assert 0 < len(report["errors"]) < 700
    assert report["more_errors"] == 700 - len(report["errors"])
    [event] = [e for e in delivered if e["rule"] == "config"]
    assert event["config"]["more_errors"] + len(event["config"]["errors"]) == 700
    assert dead == 0


# -- one source of truth for what runs -----------------------------------------------------

V1 = {"name": "ssd_mobilenet_v1_coco", "sha256": "df027205054d"}


def test_after_a_remote_model_swap_status_reported_and_events_name_the_new_model(
    tmp_path: Path,
    default_model: Path,
    v1_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    clip, _ = scene
    cache = model_dir(tmp_path, default_model)
    (cache / v1_model.name).symlink_to(v1_model)  # the manifest's file name for the v1 model
    base = config_for(tmp_path, clip, cache, broker.tls_port, pki, thing="rc-9")
    doc = base.model_dump(mode="json", exclude_none=True)
    doc["cameras"][0]["source"]["loop"] = True  # frames keep coming until we stop
    doc["health"] = {"port": 0}
    config = parse_config(doc)
    delivered: list[dict[str, Any]] = []
    cloud = CloudConsumer(
        broker.host, broker.port, topic="edge-app/rc-9/events", client_id="cloud-rc-9"
    )
    cloud.on_batch = lambda batch: delivered.extend(batch["events"])
    with cloud, RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)  # subscribed, then asked (get)
        assert wait_until(lambda: app.stats().frames >= 10)
        version = shadow.set_desired(
            "rc-9", {"detector": {"model": "ssd_mobilenet_v1_coco"}, "rules": RULES_AFTER}
        )
        assert shadow.wait_for(lambda d: reported(d).get("version") == version, "rc-9", WAIT_S)

        def new_events() -> list[dict[str, Any]]:
            return [e for e in delivered if e["rule"] == "anyone"]

        assert wait_until(lambda: len(new_events()) > 0, timeout=WAIT_S)
        assert app.telemetry is not None
        assert app.telemetry.server is not None
        url = f"http://127.0.0.1:{app.telemetry.server.port}/status"
        with urllib.request.urlopen(url, timeout=5) as response:
            status = json.loads(response.read())
        runtime = app.runtime
        app.request_stop()
    doc_now = shadow.document("rc-9")
    assert doc_now is not None
    assert (status["model"], status["config_version"]) == (V1, version)
    assert runtime.detector.model.to_json() == V1
    assert runtime.snapshot.config.version == version
    assert reported(doc_now)["model"] == V1
    assert reported(doc_now)["version"] == version
    for event in new_events():
        assert (event["model"], event["config_version"]) == (V1, version)
    [audit] = [e for e in delivered if e["rule"] == "config"]
    assert (audit["model"], audit["config_version"]) == (V1, version)
    before = [e for e in delivered if e["rule"] == "animal"]
    assert all(
        e["model"]["name"] == "ssd_mobilenet_v2_coco" for e in before if e["phase"] == "start"
    )
