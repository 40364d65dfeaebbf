"""The IoT Jobs agent against the Jobs service emulator over a real Mosquitto (mutual TLS).

Model jobs run through a ``FakeUpdater`` (the ``ModelUpdates`` seam); config jobs through the
real shadow path: ``ShadowClient.local_change`` -> ``ShadowHandler`` -> the shadow emulator,
whose document is then the record of what was asked (desired) and what runs (reported).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.clock import FakeClock, SystemClock
from edge_app.config import LastGoodStore, TlsConfig
from edge_app.domain import Event, ModelRef
from edge_app.remote import ShadowClient, ShadowHandler
from edge_app.remote.jobs import NO_MODEL_UPDATER, JobsAgent, JobTopics
from edge_app.uplink import MqttTransport, stop_network_loop
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki
from simulator.jobs import JobsService
from simulator.proxy import TcpProxy
from simulator.shadow import ShadowService
from tests.config.test_remote_overlay import MODELS, local_config
from tests.factories import wait_until
from tests.fakes import FakeUpdater, RecordingApplier

pytestmark = pytest.mark.broker

WAIT_S = 15.0
OLD = ModelRef("ssd_mobilenet_v2_coco", "a" * 12, None)


def offer(name: str = "yard-det", version: str = "2", seed: str = "new") -> dict[str, Any]:
    data = seed.encode()
    return {
        "url": f"https://models.example.com/{name}-{version}.tflite",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": 1000 + len(data),
        "name": name,
        "version": version,
    }


def model_job(**kwargs: str) -> dict[str, Any]:
    return {"operation": "model-update", "model": offer(**kwargs)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def jobs(
    broker: Mosquitto, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[JobsService]:
    with JobsService(
        broker.host,
        broker.port,
        client_id=f"jobs-{request.node.name}"[:60],
        clock=clock.monotonic,
        max_document_bytes=64 * 1024,
    ) as service:
        yield service


@dataclass
class Device:
    agent: JobsAgent
    transport: MqttTransport
    updater: FakeUpdater | None


@contextmanager
def device(
    broker: Mosquitto,
    pki: Pki,
    thing: str,
    *,
    updater: FakeUpdater | None = None,
    config: Any = None,
    transport: MqttTransport | None = None,
) -> Iterator[Device]:
    """A connected device running ``JobsAgent`` on its own thread, as ``thing``."""
    transport = transport or make_transport(broker, pki, thing)
    stop = threading.Event()
    agent = JobsAgent(
        transport, thing, stop=stop, clock=SystemClock(), config=config, models=updater
    )
    agent.attach()
    worker = threading.Thread(target=agent.run, name=f"jobs-{thing}")
    worker.start()
    try:
        with transport:
            assert wait_until(lambda: transport.is_connected, WAIT_S)
            yield Device(agent, transport, updater)
    finally:
        stop.set()
        worker.join()


def make_transport(
    broker: Mosquitto, pki: Pki, thing: str, port: int | None = None
) -> MqttTransport:
    return MqttTransport(
        "127.0.0.1" if port else broker.host,
        port or broker.tls_port,
        client_id=thing,
        tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key),
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
    )


def reached(jobs: JobsService, job: str, thing: str, status: str) -> bool:
    return jobs.wait_until(lambda: jobs.status(job, thing) == status, WAIT_S)


def test_a_model_job_succeeds_and_reports_the_model_now_running(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    updater = FakeUpdater(OLD)
    with device(broker, pki, "jb-ok", updater=updater):
        jobs.create_job("model-ok", model_job(), things=["jb-ok"])
        assert reached(jobs, "model-ok", "jb-ok", "SUCCEEDED")
    details = jobs.executions("model-ok")["jb-ok"]["statusDetails"]
    assert details["stage"] == "switched"
    assert details["model"].startswith("yard-det@2 (")
    assert details["agreement"] == "0.970"
    assert [origin for _, origin in updater.calls] == ["job:model-ok"]
    assert jobs.job_status("model-ok") == "COMPLETED"


def test_a_failed_update_fails_the_job_with_the_updaters_reason(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    why = "sha256 of the download differs from the offer"
    updater = FakeUpdater(OLD, refuse={"yard-det": why})
    with device(broker, pki, "jb-fail", updater=updater):
        jobs.create_job("model-bad", model_job(), things=["jb-fail"])
        assert reached(jobs, "model-bad", "jb-fail", "FAILED")
    details = jobs.executions("model-bad")["jb-fail"]["statusDetails"]
    assert (details["stage"], details["reason"]) == ("rejected", why)
    assert updater.running == OLD


def test_without_a_model_updater_a_model_job_fails_saying_so(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    with device(broker, pki, "jb-none"):
        jobs.create_job("model-none", model_job(), things=["jb-none"])
        assert reached(jobs, "model-none", "jb-none", "FAILED")
    assert jobs.executions("model-none")["jb-none"]["statusDetails"]["reason"] == NO_MODEL_UPDATER


def test_a_device_offline_at_creation_takes_the_job_when_it_connects(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    jobs.create_job("while-off", model_job(), things=["jb-late"])
    assert jobs.status("while-off", "jb-late") == "QUEUED"
    updater = FakeUpdater(OLD)
    with device(broker, pki, "jb-late", updater=updater):
        assert reached(jobs, "while-off", "jb-late", "SUCCEEDED")
    assert len(updater.calls) == 1


def test_jobs_run_in_order_and_duplicate_notifications_run_nothing_twice(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    updater = FakeUpdater(OLD)
    jobs.create_job("first", model_job(version="2", seed="a"), things=["jb-dup"])
    jobs.create_job("second", model_job(version="3", seed="b"), things=["jb-dup"])
    topics = JobTopics("jb-dup")
    with device(broker, pki, "jb-dup", updater=updater):
        assert reached(jobs, "second", "jb-dup", "SUCCEEDED")
        assert jobs.status("first", "jb-dup") == "SUCCEEDED"
        # replay the first job's notification, twice, then queue a third job
        stale = {
            "timestamp": 1,
            "execution": {
                "jobId": "first",
                "status": "QUEUED",
                "jobDocument": model_job(version="2", seed="a"),
            },
        }
        for _ in range(2):
            jobs.publish_raw(topics.notify_next, json.dumps(stale).encode())
        jobs.create_job("third", model_job(version="4", seed="c"), things=["jb-dup"])
        assert reached(jobs, "third", "jb-dup", "SUCCEEDED")
    assert [origin for _, origin in updater.calls] == ["job:first", "job:second", "job:third"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"operation": "reboot"}, "unknown operation 'reboot'"),
        ({"operation": "config"}, "invalid job document: desired: Field required"),
        (
            {"operation": "model-update", "model": {**offer(), "url": "file:///etc/passwd"}},
            "invalid job document: model.url",
        ),
        (
            {"operation": "model-update", "model": offer(), "run": "sh -c reboot"},
            "invalid job document: run: Extra inputs are not permitted",
        ),
        ({"operation": "config", "desired": {"rules": ["x" * 40_000]}}, "at most 32768"),
        ({"operation": "config", "desired": {"rules": ["x" * 7000]}}, "fit the edge-config"),
        ({"model": offer()}, "unknown operation 'None'"),
    ],
    ids=[
        "unknown-op",
        "missing-field",
        "file-url",
        "extra-key",
        "oversized",
        "overlay-too-big",
        "no-operation",
    ],
)
def test_a_bad_document_is_rejected_with_a_reason_and_the_next_job_runs(
    broker: Mosquitto, pki: Pki, jobs: JobsService, document: Any, reason: str
) -> None:
    updater = FakeUpdater(OLD)
    thing = "jb-bad"
    with device(broker, pki, thing, updater=updater):
        jobs.create_job("bad", document, things=[thing])
        assert jobs.wait_until(lambda: jobs.status("bad", thing) in ("REJECTED", "FAILED"), WAIT_S)
        jobs.create_job("good", model_job(), things=[thing])
        assert reached(jobs, "good", thing, "SUCCEEDED")
    execution = jobs.executions("bad")[thing]
    assert reason in execution["statusDetails"]["reason"]
    assert execution["status"] == "REJECTED"
    assert [origin for _, origin in updater.calls] == ["job:good"]


def test_a_job_in_progress_when_the_device_restarted_is_finished_idempotently(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    # The previous process took the job (start-next), switched to the model and died before
    # reporting: the job is IN_PROGRESS and the model already runs.
    job = model_job()
    jobs.create_job("restart", job, things=["jb-restart"])
    taker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="jb-restart", protocol=mqtt.MQTTv5)
    taker.connect(broker.host, broker.port)
    taker.loop_start()
    try:
        taker.publish(JobTopics("jb-restart").start_next, b"{}", qos=1).wait_for_publish(5)
        assert reached(jobs, "restart", "jb-restart", "IN_PROGRESS")
    finally:
        taker.disconnect()
        stop_network_loop(taker)
    running = ModelRef("yard-det", job["model"]["sha256"][:12], "2")
    updater = FakeUpdater(running)
    with device(broker, pki, "jb-restart", updater=updater):
        assert reached(jobs, "restart", "jb-restart", "SUCCEEDED")
    assert jobs.executions("restart")["jb-restart"]["statusDetails"]["stage"] == "unchanged"
    assert len(updater.calls) == 1


def test_a_final_status_decided_offline_is_sent_on_reconnect(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    gate = threading.Event()
    released = threading.Event()

    class SlowUpdater(FakeUpdater):
        def update(self, offer: Any, *, origin: str, progress: Any = None) -> Any:
            released.set()
            assert gate.wait(WAIT_S)
            return super().update(offer, origin=origin, progress=None)

    updater = SlowUpdater(OLD)
    with TcpProxy(free_port(), broker.host, broker.tls_port) as network:
        network.up()
        transport = make_transport(broker, pki, "jb-offline", network.listen_port)
        with device(broker, pki, "jb-offline", updater=updater, transport=transport) as dev:
            jobs.create_job("offline-end", model_job(), things=["jb-offline"])
            assert released.wait(WAIT_S)
            network.down()
            assert wait_until(lambda: not dev.transport.is_connected, WAIT_S)
            gate.set()  # the update ends while the link is down
            assert wait_until(lambda: len(dev.agent.results) == 1, WAIT_S)
            assert jobs.status("offline-end", "jb-offline") == "IN_PROGRESS"
            network.up()
            assert reached(jobs, "offline-end", "jb-offline", "SUCCEEDED")
    assert len(updater.calls) == 1


# -- config jobs, through the real shadow path -------------------------------------------------


@pytest.fixture
def shadows(broker: Mosquitto, request: pytest.FixtureRequest) -> Iterator[ShadowService]:
    name = f"shadow-{request.node.name}"[:60]
    with ShadowService(broker.host, broker.port, client_id=name) as service:
        yield service


@contextmanager
def config_device(
    broker: Mosquitto, pki: Pki, thing: str, tmp_path: Path, audit: list[Event] | None = None
) -> Iterator[tuple[Device, RecordingApplier]]:
    local = local_config(tmp_path)
    applier = RecordingApplier(local)
    handler = ShadowHandler(
        local,
        applier,
        LastGoodStore(tmp_path),
        models=MODELS,
        clock=SystemClock(),
        audit=None if audit is None else audit.append,
    )
    transport = make_transport(broker, pki, thing)
    stop = threading.Event()
    shadow = ShadowClient(transport, handler, thing, stop=stop)
    shadow.attach()
    worker = threading.Thread(target=shadow.run, name=f"shadow-{thing}")
    worker.start()

    def config(desired: dict[str, Any], origin: str) -> Any:
        return shadow.local_change(desired, 10.0, origin=origin)

    try:
        with device(broker, pki, thing, config=config, transport=transport) as dev:
            yield dev, applier
    finally:
        stop.set()
        worker.join()


def test_a_config_job_is_applied_through_the_shadow_which_records_it(
    broker: Mosquitto, pki: Pki, jobs: JobsService, shadows: ShadowService, tmp_path: Path
) -> None:
    thing = "jb-config"
    desired = {"detector": {"score_threshold": 0.71}}
    audit: list[Event] = []
    with config_device(broker, pki, thing, tmp_path, audit) as (_, applier):
        jobs.create_job("cfg", {"operation": "config", "desired": desired}, things=[thing])
        assert reached(jobs, "cfg", thing, "SUCCEEDED")

        def recorded(doc: dict[str, Any]) -> bool:
            state = doc["state"]
            return bool(
                state["desired"].get("detector") == desired["detector"]
                and state["reported"].get("config", {}).get("status") == "applied"
            )

        assert shadows.wait_for(recorded, thing, WAIT_S)
    assert applier.current().config.detector.score_threshold == 0.71
    details = jobs.executions("cfg")[thing]["statusDetails"]
    assert details["stage"] == "applied"
    assert details["config_digest"] == applier.current().digest
    doc = shadows.document(thing)
    assert doc is not None
    assert "delta" not in doc["state"]  # nothing left for the shadow to send
    assert [(e.label, e.extra["config"]["origin"]) for e in audit] == [("applied", "job:cfg")]


def test_an_invalid_config_job_fails_naming_the_field_and_changes_nothing(
    broker: Mosquitto, pki: Pki, jobs: JobsService, shadows: ShadowService, tmp_path: Path
) -> None:
    thing = "jb-config-bad"
    desired = {"detector": {"score_threshold": 7}}
    with config_device(broker, pki, thing, tmp_path) as (_, applier):
        before = applier.current().digest
        jobs.create_job("cfg-bad", {"operation": "config", "desired": desired}, things=[thing])
        assert reached(jobs, "cfg-bad", thing, "FAILED")
    reason = jobs.executions("cfg-bad")[thing]["statusDetails"]["reason"]
    assert reason.startswith("config rejected: detector.score_threshold:")
    assert applier.current().digest == before
    assert applier.applied == []
    doc = shadows.document(thing)
    assert doc is None or "detector" not in doc["state"]["desired"]


# -- rollouts and the abort rule ---------------------------------------------------------------


def test_the_abort_rule_cancels_the_job_and_the_queued_executions(
    broker: Mosquitto, pki: Pki, jobs: JobsService
) -> None:
    group = ["jb-ab-1", "jb-ab-2", "jb-ab-3"]
    jobs.add_group("abort-yard", group)
    updater = FakeUpdater(OLD, refuse={"yard-det": "the model failed its test run"})
    with device(broker, pki, group[0], updater=updater):
        jobs.create_job(
            "abort-me",
            model_job(),
            groups=["abort-yard"],
            abort=[
                {
                    "failureType": "FAILED",
                    "action": "CANCEL",
                    "thresholdPercentage": 30,
                    "minNumberOfExecutedThings": 1,
                }
            ],
        )
        assert reached(jobs, "abort-me", group[0], "FAILED")
        assert jobs.wait_until(lambda: jobs.job_status("abort-me") == "CANCELED", WAIT_S)
    assert {t: jobs.status("abort-me", t) for t in group[1:]} == dict.fromkeys(
        group[1:], "CANCELED"
    )
    assert jobs.describe_job("abort-me")["reasonCode"].startswith("aborted: FAILED reached 100")
    # a canceled execution is never run, even when its device comes online
    late = FakeUpdater(OLD)
    with device(broker, pki, group[1], updater=late):
        jobs.create_job("after-abort", model_job(version="9"), things=[group[1]])
        assert reached(jobs, "after-abort", group[1], "SUCCEEDED")
    assert [origin for _, origin in late.calls] == ["job:after-abort"]


def test_a_staged_rollout_releases_one_device_per_minute_in_order(
    broker: Mosquitto, pki: Pki, jobs: JobsService, clock: FakeClock
) -> None:
    group = ["jb-st-1", "jb-st-2", "jb-st-3"]
    jobs.add_group("staged", group)
    updaters = [FakeUpdater(OLD) for _ in group]
    with (
        device(broker, pki, group[0], updater=updaters[0]),
        device(broker, pki, group[1], updater=updaters[1]),
        device(broker, pki, group[2], updater=updaters[2]),
    ):
        jobs.create_job("staged", model_job(), groups=["staged"], rollout={"maximumPerMinute": 1})
        assert reached(jobs, "staged", group[0], "SUCCEEDED")
        assert [jobs.status("staged", t) for t in group[1:]] == [None, None]
        clock.advance(60.0)
        jobs.tick()
        assert reached(jobs, "staged", group[1], "SUCCEEDED")
        assert jobs.status("staged", group[2]) is None
        clock.advance(60.0)
        jobs.tick()
        assert reached(jobs, "staged", group[2], "SUCCEEDED")
    assert [len(u.calls) for u in updaters] == [1, 1, 1]
    assert jobs.job_status("staged") == "COMPLETED"
