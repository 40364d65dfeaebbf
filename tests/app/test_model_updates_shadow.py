"""An over-the-air switch on a device with remote config (real broker, shadow service, models
and file server): the shadow's ``reported`` names the new model and the update's outcome, its
``desired`` learns the model (so no delta undoes it), and a later remote change keeps it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_app.config import parse_config
from edge_app.models.offer import UpdateState
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.files import FileServer
from simulator.scene import SceneTruth
from simulator.shadow import ShadowService
from tests.app.test_model_updates import default_labels, offer_of, www
from tests.app.test_remote_config import (
    WAIT_S,
    RecordingApp,
    config_for,
    model_dir,
    reported,
    shadow,
)
from tests.factories import wait_until

__all__ = ["shadow", "www"]  # the fixtures, used by name


def test_reported_names_the_switched_model_and_a_later_delta_keeps_it(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
    www: FileServer,
) -> None:
    clip, _ = scene
    cache = model_dir(tmp_path, default_model)
    base = config_for(tmp_path, clip, cache, broker.tls_port, pki, thing="ota-9")
    doc = base.model_dump(mode="json", exclude_none=True)
    doc["cameras"][0]["source"]["loop"] = True
    doc["health"] = {"port": 0}
    doc["model_updates"] = {
        "allowed_urls": [www.base],
        "sample_every_s": 0.2,
        "test_frames": 4,
        "watch_frames": 5,
    }
    config = parse_config(doc)
    offer = offer_of(www, default_model, "people", "2", default_labels())
    want = {"name": "people", "sha256": offer.sha256[:12], "version": "2"}

    def update_shown(d: dict[str, Any]) -> bool:
        shown = d["state"].get("reported", {}).get("model_update") or {}
        return bool(shown.get("state") == "switched" and reported(d).get("model") == want)

    with RecordingApp(config) as app:
        assert wait_until(lambda: shadow.requests >= 1)
        assert wait_until(lambda: app.stats().frames >= 20, timeout=WAIT_S)
        result = app.model_updates.update(offer, origin="job:s-1")
        assert shadow.wait_for(update_shown, "ota-9", WAIT_S)
        after = shadow.document("ota-9")
        # a later remote change (a threshold) must not bring the old model back
        version = shadow.set_desired("ota-9", {"detector": {"score_threshold": 0.45}})
        assert shadow.wait_for(lambda d: reported(d).get("version") == version, "ota-9", WAIT_S)
        running = app.runtime.detector.model.to_json()
        threshold = app.runtime.snapshot.config.detector.score_threshold
        app.request_stop()
    assert result.state is UpdateState.SWITCHED, result.reason
    assert after is not None
    update = after["state"]["reported"]["model_update"]
    assert update["ref"] == "people@2"
    assert update["origin"] == "job:s-1"
    assert update["agreement"] == 1.0
    assert update["model"] == want
    assert after["state"]["desired"]["detector"]["model"] == "people@2"
    assert running == want
    assert threshold == 0.45
