"""Remote config chooses a registered model only once approved, and the model in force is
then named with its version in ``reported`` and in events (real broker, shadow service and
models)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_app.config import parse_config
from edge_app.models import Conventions, ModelStatus, Registry, register_model
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.cloud import CloudConsumer
from simulator.scene import SceneTruth
from simulator.shadow import ShadowService
from tests.app.test_remote_config import (
    RULES_AFTER,
    WAIT_S,
    RecordingApp,
    config_for,
    model_dir,
    reported,
    shadow,
)
from tests.factories import wait_until

__all__ = ["shadow"]  # the fixture, used by name


def test_only_an_approved_registered_model_can_be_chosen_remotely(
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
    entry = register_model(
        cache, v1_model, "people", "1", conventions=Conventions(format="ssd_postprocess")
    )
    base = config_for(tmp_path, clip, cache, broker.tls_port, pki, thing="rr-1")
    doc = base.model_dump(mode="json", exclude_none=True)
    doc["cameras"][0]["source"]["loop"] = True
    config = parse_config(doc)
    delivered: list[dict[str, Any]] = []
    cloud = CloudConsumer(
        broker.host, broker.port, topic="edge-app/rr-1/events", client_id="cloud-rr-1"
    )
    cloud.on_batch = lambda batch: delivered.extend(batch["events"])
    desired = {"detector": {"model": "people@1"}, "rules": RULES_AFTER}
    with cloud, RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)
        pending = shadow.set_desired("rr-1", desired)
        assert shadow.wait_for(
            lambda d: reported(d).get("rejected_version") == pending, "rr-1", WAIT_S
        )
        rejection = reported(shadow.document("rr-1") or {})
        Registry(cache).set_status("people", "1", ModelStatus.APPROVED)  # no restart
        approved = shadow.set_desired("rr-1", desired)
        assert shadow.wait_for(lambda d: reported(d).get("version") == approved, "rr-1", WAIT_S)
        assert wait_until(lambda: any(e["rule"] == "anyone" for e in delivered), timeout=WAIT_S)
        model = app.runtime.detector.model.to_json()
        now = reported(shadow.document("rr-1") or {})
        app.request_stop()
    [error] = rejection["errors"]
    assert error["field"] == "detector.model"
    assert "edge-app models approve" in error["reason"]
    expected = {"name": "people", "sha256": entry.sha256[:12], "version": "1"}
    assert model == expected
    assert now["model"] == expected
    for event in (e for e in delivered if e["rule"] == "anyone"):
        assert event["model"] == expected
