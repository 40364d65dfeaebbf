"""The real daemon runs IoT Jobs within the least-privilege policy: on ``policy_broker``, as
thing-a, a config job is applied through its ``edge-config`` shadow (SUCCEEDED, the shadow's
desired and reported both show it); a model job runs the over-the-air updater against a real
file server (SUCCEEDED, the new version runs and the shadow reports it), and one whose bytes
are not a model FAILS with the updater's reason while the running model stays. The Jobs
emulator and the shadow emulator sit on the broker's unrestricted plain listener, as the AWS
services do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_app.config import parse_config
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.files import FileServer
from simulator.jobs import JobsService
from simulator.scene import SceneTruth
from simulator.shadow import ShadowService
from tests.app.test_model_updates import default_labels, offer_of, publish
from tests.app.test_remote_config import RecordingApp, config_for, model_dir
from tests.app.test_remote_config import reported as reported_config

pytestmark = pytest.mark.broker

WAIT_S = 30.0
THING = "thing-a"


def test_the_daemon_runs_config_and_model_jobs_within_the_policy(
    tmp_path: Path,
    default_model: Path,
    scene: tuple[Path, SceneTruth],
    policy_broker: Mosquitto,
    fleet: dict[str, Pki],
) -> None:
    clip, _ = scene
    www_dir = tmp_path / "www"
    www_dir.mkdir()
    base = config_for(
        tmp_path,
        clip,
        model_dir(tmp_path, default_model),
        policy_broker.tls_port,
        fleet[THING],
        thing=THING,
    ).model_dump(mode="json", exclude_unset=True)
    suffix = time.monotonic_ns()
    shadow = ShadowService(policy_broker.host, policy_broker.port, client_id=f"ja-shadow-{suffix}")
    jobs = JobsService(policy_broker.host, policy_broker.port, client_id=f"ja-jobs-{suffix}")
    cfg_job, model_job, bad_job = f"cfg-{suffix}", f"model-{suffix}", f"bad-{suffix}"
    with shadow, jobs, FileServer(www_dir) as www:
        base["cameras"][0]["source"]["loop"] = True  # frames for the test run and the watch
        base["model_updates"] = {"allowed_urls": [www.base], "sample_every_s": 0.2}
        config = parse_config(base)
        good = offer_of(www, default_model, "yard", "2", labels=default_labels())
        garbage = www_dir / "garbage.bin"
        garbage.write_bytes(b"not a flatbuffer " * 64)
        bad = publish(www, garbage, "yard-3.tflite").model_dump() | {
            "name": "yard",
            "version": "3",
        }
        with RecordingApp(config) as app:
            jobs.create_job(
                cfg_job,
                {"operation": "config", "desired": {"detector": {"score_threshold": 0.62}}},
                things=[THING],
            )
            assert jobs.wait_until(lambda: jobs.status(cfg_job, THING) == "SUCCEEDED", WAIT_S)
            assert shadow.wait_for(
                lambda d: (
                    reported_config(d).get("status") == "applied"
                    and d["state"]["desired"].get("detector") == {"score_threshold": 0.62}
                ),
                THING,
                WAIT_S,
            )
            assert app.snapshot.config.detector.score_threshold == 0.62
            jobs.create_job(
                model_job,
                {"operation": "model-update", "model": good.model_dump(mode="json")},
                things=[THING],
            )
            assert jobs.wait_until(lambda: jobs.status(model_job, THING) == "SUCCEEDED", WAIT_S)
            assert app.runtime.detector.model.version == "2"
            assert shadow.wait_for(
                lambda d: (
                    d["state"].get("reported", {}).get("model_update", {}).get("ref") == "yard@2"
                ),
                THING,
                WAIT_S,
            )
            jobs.create_job(bad_job, {"operation": "model-update", "model": bad}, things=[THING])
            assert jobs.wait_until(lambda: jobs.status(bad_job, THING) == "FAILED", WAIT_S)
            assert app.runtime.detector.model.version == "2"  # the running model stayed
    assert (
        "not a TensorFlow Lite model" in jobs.executions(bad_job)[THING]["statusDetails"]["reason"]
    )
    assert jobs.executions(model_job)[THING]["statusDetails"]["stage"] == "switched"
    assert jobs.executions(cfg_job)[THING]["statusDetails"]["stage"] == "applied"
