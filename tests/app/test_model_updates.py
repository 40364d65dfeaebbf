"""Over-the-air model updates on a running daemon: real models, a real HTTP file server, a
camera replaying a clip. The default model (SSD MobileNet v2) runs; offers are a second copy
of it under another name and version (without real-world data), and SSD v1, the broken
``model_invoking_error.tflite`` and an ImageNet classifier (with it)."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_app.app import EdgeApp
from edge_app.config import AppConfig, DetectorConfig, LastGoodStore, parse_config
from edge_app.domain import Detections, ModelRef
from edge_app.models import Catalog, ModelStatus, Registry, load_manifest, sha256_file
from edge_app.models.offer import FileOffer, ModelOffer, UpdateResult, UpdateState
from edge_app.pipeline import MAX_DETECT_ERRORS, CameraStats
from edge_app.updates import ModelUpdater
from edge_app.vision.detector import Detector, Preparer, open_detector
from simulator.files import FileServer
from simulator.scene import SceneTruth
from tests.app.test_app import stored_events
from tests.factories import wait_until

WAIT_S = 60.0
RULES = [
    {
        "name": "anyone",
        "labels": ["person", "cat", "dog", "motorcycle", "bicycle", "car"],
        "min_score": 0.4,
        "min_frames": 1,
        "end_after_s": 0.5,
    }
]


@pytest.fixture
def www(tmp_path: Path) -> Iterator[FileServer]:
    folder = tmp_path / "www"
    folder.mkdir()
    with FileServer(folder) as server:
        yield server


def cache_with(tmp_path: Path, default_model: Path) -> Path:
    cache = tmp_path / "models"
    cache.mkdir(exist_ok=True)
    (cache / default_model.name).symlink_to(default_model)
    return cache


def config_for(
    tmp_path: Path, clip: Path, cache: Path, www: FileServer, **updates: Any
) -> AppConfig:
    return parse_config(
        {
            "device": {"thing_name": "ota-1", "data_dir": str(tmp_path / "data")},
            "cameras": [
                {
                    "name": "yard",
                    "source": {
                        "type": "file",
                        "path": str(clip),
                        "realtime": True,
                        "speed": 2.0,
                        "loop": True,
                    },
                }
            ],
            "detector": {
                "model": "ssd_mobilenet_v2_coco",
                "model_dir": str(cache),
                "score_threshold": 0.4,
            },
            "rules": RULES,
            "uplink": {"enabled": False},
            "health": {"port": 0},
            "model_updates": {
                "allowed_urls": [www.base],
                "sample_every_s": 0.2,
                "test_frames": 6,
                "watch_frames": 10,
                "retries": 1,
                **updates,
            },
            "log_level": "error",
        }
    )


def publish(www: FileServer, source: Path, name: str) -> FileOffer:
    """Put ``source`` on the file server as ``name``; its offer."""
    target = www.folder / name
    shutil.copyfile(source, target)
    return FileOffer(url=www.url(name), sha256=sha256_file(target), size=target.stat().st_size)


def offer_of(
    www: FileServer, source: Path, name: str, version: str, labels: Path | None = None
) -> ModelOffer:
    model = publish(www, source, f"{name}-{version}.tflite")
    label_offer = publish(www, labels, f"{name}-{version}.txt") if labels else None
    return ModelOffer(**model.model_dump(), name=name, version=version, labels=label_offer)


def default_labels() -> Path:
    catalog = load_manifest()
    return catalog.labels_path(catalog.default_spec())


def status_of(app: EdgeApp) -> dict[str, Any]:
    assert app.telemetry is not None
    assert app.telemetry.server is not None
    url = f"http://127.0.0.1:{app.telemetry.server.port}/status"
    with urllib.request.urlopen(url, timeout=5) as response:
        doc: dict[str, Any] = json.loads(response.read())
    return doc


def yard(app: EdgeApp) -> CameraStats:
    return app.camera_stats()["yard"]


def started(app: EdgeApp) -> None:
    """Wait until the camera runs and the test-run ring holds frames."""
    assert wait_until(lambda: yard(app).processed >= 20, timeout=WAIT_S)


V2 = {"name": "ssd_mobilenet_v2_coco"}


def test_a_second_copy_switches_names_itself_everywhere_loses_no_frame_and_survives_a_restart(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], www: FileServer
) -> None:
    clip, _ = scene
    cache = cache_with(tmp_path, default_model)
    config = config_for(tmp_path, clip, cache, www)
    offer = offer_of(www, default_model, "people", "2", default_labels())
    notes: list[str] = []
    with EdgeApp(config) as app:
        started(app)
        result = app.model_updates.update(offer, origin="job:j-1", progress=notes.append)
        after = yard(app).processed
        assert wait_until(lambda: yard(app).processed >= after + 5, timeout=WAIT_S)
        seq = app.stats().last_seq  # every event from here on was raised on the new model
        events_then = app.stats().events
        assert wait_until(lambda: app.stats().events > events_then, timeout=WAIT_S)
        status = status_of(app)
        again = app.model_updates.update(offer, origin="job:j-2")
        app.request_stop()
        app.wait(WAIT_S)
        stats = yard(app)
    assert result.state is UpdateState.SWITCHED, result.reason
    want = {"name": "people", "sha256": offer.sha256[:12], "version": "2"}
    assert result.model.to_json() == want
    assert result.agreement == 1.0  # the same network on the same frames
    assert result.figures["test_frames"] == 6
    assert 0 < result.figures["switch_s"] < 5
    assert result.figures["watch_frames"] >= 10
    assert notes[0] == "downloading 0%" or notes[0].startswith("downloading")
    assert "switching" in notes
    assert any(n.startswith("test-running on 6") for n in notes)
    assert again.state is UpdateState.UNCHANGED
    # frames lost during the switch: none
    assert stats.detect_errors == 0
    assert stats.lost == 0
    assert stats.config_changes >= 1
    assert status["model"] == want
    assert status["model_update"]["state"] == "switched"  # the last outcome
    assert status["model_update"]["model"] == want
    newer = [e for e in stored_events(config) if e["seq"] > seq]
    assert newer
    assert all(e["model"] == want for e in newer)
    entry = Registry(cache).get("people", "2")
    assert entry.status is ModelStatus.APPROVED
    assert entry.lineage["source"]["url"] == offer.url
    assert entry.lineage["origin"] == "job:j-1"
    assert entry.conventions.labels == "people-2.labels.txt"
    assert not list((cache / "downloads").iterdir())  # the registry holds the copy
    # the last good model survives a restart on the same state dir
    with EdgeApp(config) as app:
        model = app.runtime.detector.model.to_json()
        source = app.snapshot.source
        app.request_stop()
    assert model == want
    assert source == "last-good"


def test_bad_offers_are_rejected_and_the_running_model_never_stops(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], www: FileServer
) -> None:
    clip, _ = scene
    cache = cache_with(tmp_path, default_model)
    config = config_for(tmp_path, clip, cache, www)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(np.random.default_rng(0).bytes(50_000))
    good = offer_of(www, default_model, "people", "2")
    offers: dict[str, tuple[ModelOffer, str]] = {
        "garbage": (offer_of(www, garbage, "junk", "1"), "not a TensorFlow Lite model"),
        "bad hash": (good.model_copy(update={"sha256": "ab" * 32}), "the offer says"),
        "not allowed": (
            good.model_copy(update={"url": "https://elsewhere.example.com/m.tflite"}),
            "not under any of model_updates.allowed_urls",
        ),
        "missing": (good.model_copy(update={"url": www.url("gone.tflite")}), "HTTP 404"),
        "too long": (good.model_copy(update={"size": 1000}), "longer than the offered"),
    }
    www.truncate.add("truncated-1.tflite")
    offers["truncated"] = (offer_of(www, default_model, "truncated", "1"), "stopped at")
    results: dict[str, UpdateResult] = {}
    with EdgeApp(config) as app:
        started(app)
        before = yard(app).processed
        for what, (offer, _) in offers.items():
            results[what] = app.model_updates.update(offer, origin=f"job:{what}")
        # a version already registered with other bytes
        register = offer_of(www, default_model, "people", "7")
        assert app.model_updates.update(register, origin="job:r").state is UpdateState.SWITCHED
        other = offer_of(www, garbage, "people", "7")
        results["version taken"] = app.model_updates.update(other, origin="job:vt")
        offers["version taken"] = (other, "already registered with sha256")
        running = app.runtime.detector.model
        assert wait_until(lambda: yard(app).processed > before + 10, timeout=WAIT_S)
        status = status_of(app)
        app.request_stop()
    for what, (_, reason) in offers.items():
        assert results[what].state is UpdateState.REJECTED, what
        assert reason in results[what].reason, (what, results[what].reason)
        assert "\n" not in results[what].reason
    assert running.name == "people"
    assert running.version == "7"
    assert status["model_update"]["state"] == "rejected"
    assert "already registered" in status["model_update"]["reason"]
    assert "junk" not in {e.name for e in Registry(cache).entries()}  # never registered


class FailsAfter:
    """A real detector that starts failing at invoke after ``ok`` calls (a model that passes
    its test run and then breaks on the live camera)."""

    def __init__(self, inner: Detector, ok: int) -> None:
        self._inner = inner
        self._ok = ok
        self.calls = 0

    @property
    def model(self) -> ModelRef:
        return self._inner.model

    @property
    def labels(self) -> Any:
        return self._inner.labels

    @property
    def runtime_name(self) -> str:
        return self._inner.runtime_name

    @property
    def input_size(self) -> tuple[int, int]:
        return self._inner.input_size

    @property
    def threads(self) -> int:
        return self._inner.threads

    @property
    def score_threshold(self) -> float:
        return self._inner.score_threshold

    def set_score_threshold(self, value: float) -> None:
        self._inner.set_score_threshold(value)

    def preparer(self) -> Preparer | None:
        return None

    def detect(self, image_bgr: NDArray[np.uint8]) -> Detections:
        self.calls += 1
        if self.calls > self._ok:
            raise RuntimeError("invoke failed: tensor arena corrupted")
        return self._inner.detect(image_bgr)

    def close(self) -> None:
        self._inner.close()


def failing_opener(ok: int) -> Callable[[DetectorConfig, Catalog | None], Detector]:
    def open_model(config: DetectorConfig, catalog: Catalog | None) -> Detector:
        return FailsAfter(open_detector(config, catalog), ok)

    return open_model


def test_a_model_that_fails_in_its_health_watch_is_rolled_back(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], www: FileServer
) -> None:
    clip, _ = scene
    cache = cache_with(tmp_path, default_model)
    config = config_for(tmp_path, clip, cache, www)
    offer = offer_of(www, default_model, "people", "3")
    with EdgeApp(config) as app:
        started(app)
        shipped = app.model_updates
        assert isinstance(shipped, ModelUpdater)
        updater = ModelUpdater(config, replace(shipped.parts, open_model=failing_opener(ok=6)))
        result = updater.update(offer, origin="job:rb")
        at_test = ModelUpdater(config, replace(shipped.parts, open_model=failing_opener(ok=2)))
        early = at_test.update(offer_of(www, default_model, "people", "8"), origin="job:early")
        after = yard(app).processed
        assert wait_until(lambda: yard(app).processed > after + 10, timeout=WAIT_S)
        running = app.runtime.detector.model.to_json()
        stats = yard(app)
        app.request_stop()
    assert early.state is UpdateState.REJECTED  # failed at invoke in its test run
    assert early.reason.startswith("the model fails at invoke: invoke failed")
    assert Registry(cache).get("people", "8").status is ModelStatus.REJECTED
    assert result.state is UpdateState.ROLLED_BACK
    assert "failed at invoke" in result.reason
    assert "tensor arena" in result.reason
    assert result.model.name == "ssd_mobilenet_v2_coco"
    assert result.figures["rollback_s"] < 5
    assert running["name"] == "ssd_mobilenet_v2_coco"
    assert 1 <= stats.detect_errors < MAX_DETECT_ERRORS  # the camera rode it out
    assert Registry(cache).get("people", "3").status is ModelStatus.REJECTED
    last = LastGoodStore(config.device.data_dir).load()
    # a model is persisted only once it passed its watch: this one never was
    assert last is None or "people@3" not in json.dumps(last.desired)
    with EdgeApp(config) as app:  # a restart runs the previous model
        model = app.runtime.detector.model.name
        app.request_stop()
    assert model == "ssd_mobilenet_v2_coco"


def test_real_models_switch_with_measured_agreement_or_are_rejected_saying_why(
    tmp_path: Path,
    default_model: Path,
    v1_model: Path,
    realworld: Path,
    www: FileServer,
) -> None:
    # a dashcam on a highway, cars near and far in every frame: both models find some
    clip = realworld / "videos" / "udacity_test_video.mp4"
    cache = cache_with(tmp_path, default_model)
    config = config_for(tmp_path, clip, cache, www, agreement_floor=0.05)
    models = realworld / "models"
    broken = offer_of(www, models / "model_invoking_error.tflite", "broken", "1")
    classifier = offer_of(www, models / "mobilenet_v2_1.0_224_quant.tflite", "imagenet", "1")
    v1 = offer_of(www, v1_model, "ssd-v1", "1", models / "ssd_mobilenet_v1_coco_labels.txt")
    with EdgeApp(config) as app:
        started(app)
        updater = app.model_updates
        bad = updater.update(broken, origin="job:b")
        odd = updater.update(classifier, origin="job:c")
        strict = ModelUpdater(  # the same app, a floor no other model reaches
            config.model_copy(
                update={
                    "model_updates": config.model_updates.model_copy(
                        update={"agreement_floor": 0.99}
                    )
                }
            ),
            updater.parts,
        )
        floor = strict.update(v1, origin="job:f")
        real = updater.update(v1, origin="job:v1")
        running = app.runtime.detector.model.to_json()
        stats = yard(app)
        app.request_stop()
    assert bad.state is UpdateState.REJECTED
    assert "fake-op-double" in bad.reason or "custom op" in bad.reason
    assert odd.state is UpdateState.REJECTED
    assert "cannot load the model" in odd.reason
    assert "no decoder understands" in odd.reason
    assert "\n" not in odd.reason
    assert floor.state is UpdateState.REJECTED, floor.agreement
    assert floor.agreement is not None
    assert f"agreement {floor.agreement:.3f}" in floor.reason
    assert "below" in floor.reason
    assert real.state is UpdateState.SWITCHED, real.reason
    assert real.figures["reference_detections"] >= 6  # >= 1 person a frame: measured
    assert real.agreement is not None
    assert 0.05 <= real.agreement < 0.99
    assert running == {"name": "ssd-v1", "sha256": v1.sha256[:12], "version": "1"}
    assert stats.detect_errors == 0
    assert stats.lost == 0
    print(f"SSD v1 vs v2 agreement on 6 dashcam frames: {real.agreement:.3f}")
    print(f"broken: {bad.reason}\nclassifier: {odd.reason}")


def test_without_remote_config_or_status_page_the_switch_still_survives_a_restart(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], www: FileServer
) -> None:
    clip, _ = scene
    cache = cache_with(tmp_path, default_model)
    doc = config_for(tmp_path, clip, cache, www).model_dump(mode="json", exclude_none=True)
    doc["health"] = {"enabled": False}  # no status page: no local-change path either
    config = parse_config(doc)
    offer = offer_of(www, default_model, "people", "4")
    with EdgeApp(config) as app:
        started(app)
        result = app.model_updates.update(offer, origin="job:np")
        app.request_stop()
    assert result.state is UpdateState.SWITCHED, result.reason
    last = LastGoodStore(config.device.data_dir).load()
    assert last is not None
    assert last.desired == {"detector": {"model": "people@4"}}
    with EdgeApp(config) as app:
        model = app.runtime.detector.model
        app.request_stop()
    assert (model.name, model.version) == ("people", "4")


def test_a_stop_ends_a_capped_download_and_the_next_start_resumes_it_with_range(
    tmp_path: Path, default_model: Path, scene: tuple[Path, SceneTruth], www: FileServer
) -> None:
    clip, _ = scene
    cache = cache_with(tmp_path, default_model)
    capped = config_for(tmp_path, clip, cache, www, bandwidth_bytes_per_s=200_000)
    offer = offer_of(www, default_model, "people", "5")
    part = cache / "downloads" / f"{offer.sha256}.part"
    results: list[UpdateResult] = []
    with EdgeApp(capped) as app:
        started(app)
        worker = threading.Thread(
            target=lambda: results.append(app.model_updates.update(offer, origin="job:cap"))
        )
        worker.start()
        assert wait_until(lambda: part.exists() and part.stat().st_size > 100_000)
        other = app.model_updates.update(offer_of(www, default_model, "people", "6"), origin="x")
        app.request_stop()
        worker.join(WAIT_S)
    [stopped] = results
    assert other.state is UpdateState.REJECTED
    assert "another model update is in progress" in other.reason
    assert stopped.state is UpdateState.REJECTED
    assert "the app is stopping" in stopped.reason
    kept = part.stat().st_size
    assert 100_000 < kept < offer.size
    uncapped = config_for(tmp_path, clip, cache, www)
    with EdgeApp(uncapped) as app:
        started(app)
        resumed = app.model_updates.update(offer, origin="job:cap")
        app.request_stop()
    assert resumed.state is UpdateState.SWITCHED, resumed.reason
    assert www.requests[-1] == ("people-5.tflite", f"bytes={kept}-")
    assert resumed.figures["download_bytes"] == offer.size - kept
