"""The real daemon runs IoT Jobs within the least-privilege policy: on ``policy_broker``, as
thing-a, a config job is applied through its ``edge-config`` shadow (SUCCEEDED, the shadow's
desired and reported both show it), and a model job FAILS, saying the device has no model
updater (none is wired until the OTA updater lands). The Jobs emulator and the shadow emulator
sit on the broker's unrestricted plain listener, as the AWS services do."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from edge_app.remote.jobs import NO_MODEL_UPDATER
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.jobs import JobsService
from simulator.scene import SceneTruth
from simulator.shadow import ShadowService
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
    config = config_for(
        tmp_path,
        clip,
        model_dir(tmp_path, default_model),
        policy_broker.tls_port,
        fleet[THING],
        thing=THING,
    )
    suffix = time.monotonic_ns()
    shadow = ShadowService(policy_broker.host, policy_broker.port, client_id=f"ja-shadow-{suffix}")
    jobs = JobsService(policy_broker.host, policy_broker.port, client_id=f"ja-jobs-{suffix}")
    data = b"a model that will never be fetched"
    offer = {
        "url": "https://models.example.com/yard-2.tflite",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "name": "yard",
        "version": "2",
    }
    cfg_job, model_job = f"cfg-{suffix}", f"model-{suffix}"
    with shadow, jobs, RecordingApp(config) as app:
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
        jobs.create_job(model_job, {"operation": "model-update", "model": offer}, things=[THING])
        assert jobs.wait_until(lambda: jobs.status(model_job, THING) == "FAILED", WAIT_S)
    assert jobs.executions(model_job)[THING]["statusDetails"]["reason"] == NO_MODEL_UPDATER
    assert jobs.executions(cfg_job)[THING]["statusDetails"]["stage"] == "applied"
