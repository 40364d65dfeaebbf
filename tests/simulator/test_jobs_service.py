"""The IoT Jobs service emulator against a real Mosquitto, spoken to as a device would (a plain
MQTT client on the Jobs topics): AWS's documents and error codes, timeouts, exponential
rollouts and cancel. The device agent's side is in ``tests/remote/test_jobs_agent.py``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_app.clock import FakeClock, SystemClock
from edge_app.config import TlsConfig
from edge_app.remote import Outcome
from edge_app.remote.jobs import JobsAgent
from edge_app.uplink import MqttTransport, stop_network_loop
from simulator.__main__ import main as simulator_main
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.jobs import JobsError, JobsService
from tests.factories import wait_until

pytestmark = pytest.mark.broker

WAIT_S = 15.0
DOC = {"operation": "config", "desired": {}}


class Thing:
    """A plain MQTT client as ``thing``, recording every Jobs message it gets."""

    def __init__(self, broker: Mosquitto, thing: str) -> None:
        self.prefix = f"$aws/things/{thing}/jobs"
        self.got: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{thing}-peer", protocol=mqtt.MQTTv5
        )
        self._client.on_connect = lambda c, *_: c.subscribe(self.prefix + "/#", qos=1)
        self._client.on_subscribe = lambda *_: ready.set()
        self._client.on_message = self._keep
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert ready.wait(WAIT_S)

    def _keep(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith(("accepted", "rejected", "notify-next", "notify")):
            with self._lock:
                self.got.append((msg.topic, json.loads(msg.payload)))

    def ask(self, suffix: str, body: Any, token: str) -> tuple[str, dict[str, Any]]:
        """Publish a request with ``clientToken`` ``token``; the answer (topic suffix, body)."""
        payload = body if isinstance(body, bytes) else json.dumps({**body, "clientToken": token})
        self._client.publish(f"{self.prefix}/{suffix}", payload, qos=1).wait_for_publish(5)

        def answer() -> tuple[str, dict[str, Any]] | None:
            with self._lock:
                for topic, doc in self.got:
                    if doc.get("clientToken") == token or (
                        isinstance(body, bytes) and topic.startswith(f"{self.prefix}/{suffix}/")
                    ):
                        return topic.removeprefix(self.prefix + "/"), doc
            return None

        assert wait_until(lambda: answer() is not None, WAIT_S), suffix
        found = answer()
        assert found is not None
        return found

    def notified(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d for t, d in self.got if t.endswith("/notify-next")]

    def close(self) -> None:
        self._client.disconnect()
        stop_network_loop(self._client)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(
    broker: Mosquitto, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[JobsService]:
    name = f"svc-{request.node.name}"[:60]
    with JobsService(broker.host, broker.port, client_id=name, clock=clock.monotonic) as svc:
        yield svc


@pytest.fixture
def thing(broker: Mosquitto, request: pytest.FixtureRequest) -> Iterator[Thing]:
    peer = Thing(broker, f"js-{request.node.name}"[:40].replace("[", "-").replace("]", ""))
    yield peer
    peer.close()


def name_of(peer: Thing) -> str:
    return peer.prefix.split("/")[2]


def test_start_next_describe_and_update_answer_with_aws_documents(
    service: JobsService, thing: Thing
) -> None:
    me = name_of(thing)
    service.create_job("j1", DOC, things=[me])
    assert wait_until(lambda: bool(thing.notified()))
    assert thing.notified()[0]["execution"]["jobId"] == "j1"
    topic, pending = thing.ask("get", {}, "t-get")
    assert topic == "get/accepted"
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["j1"]
    topic, started = thing.ask("start-next", {"statusDetails": {"stage": "go"}}, "t-start")
    execution = started["execution"]
    assert topic == "start-next/accepted"
    assert (execution["status"], execution["versionNumber"], execution["executionNumber"]) == (
        "IN_PROGRESS", 2, 1,
    )  # fmt: skip
    assert execution["jobDocument"] == DOC
    assert execution["statusDetails"] == {"stage": "go"}
    topic, described = thing.ask("$next/get", {"includeJobDocument": False}, "t-next")
    assert topic == "$next/get/accepted"
    assert described["execution"]["jobId"] == "j1"
    assert "jobDocument" not in described["execution"]
    topic, updated = thing.ask(
        "j1/update",
        {"status": "SUCCEEDED", "expectedVersion": 2, "includeJobExecutionState": True},
        "t-upd",
    )
    assert topic == "j1/update/accepted"
    assert updated["executionState"]["status"] == "SUCCEEDED"
    assert wait_until(lambda: "execution" not in thing.notified()[-1])  # nothing left
    assert service.job_status("j1") == "COMPLETED"
    topic, none = thing.ask("start-next", {}, "t-none")
    assert (topic, "execution" in none) == ("start-next/accepted", False)


@pytest.mark.parametrize(
    ("suffix", "body", "code"),
    [
        ("start-next", b"{not json", "InvalidJson"),
        ("j2/frobnicate", {}, "InvalidTopic"),
        ("nope/get", {}, "ResourceNotFound"),
        ("j2/update", {"status": "DONE"}, "InvalidRequest"),
        (
            "j2/update",
            {"status": "IN_PROGRESS", "statusDetails": {"bad key!": "x"}},
            "InvalidRequest",
        ),
        (
            "j2/update",
            {"status": "IN_PROGRESS", "statusDetails": {"reason": "a\nb"}},
            "InvalidRequest",
        ),
        ("j2/update", {"status": "IN_PROGRESS", "expectedVersion": 9}, "VersionMismatch"),
    ],
    ids=["json", "topic", "not-found", "status", "detail-key", "detail-control-char", "version"],
)
def test_bad_requests_get_aws_error_codes(
    service: JobsService, thing: Thing, suffix: str, body: Any, code: str
) -> None:
    service.create_job("j2", DOC, things=[name_of(thing)])
    topic, error = thing.ask(suffix, body, f"t-{code}")
    assert topic.endswith("/rejected")
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert service.status("j2", name_of(thing)) == "QUEUED"  # nothing changed


def test_terminal_executions_refuse_updates(service: JobsService, thing: Thing) -> None:
    me = name_of(thing)
    service.create_job("j3", DOC, things=[me])
    service.create_job("j4", DOC, things=[me])
    thing.ask("j3/update", {"status": "FAILED"}, "t-fail")
    topic, error = thing.ask("j3/update", {"status": "IN_PROGRESS"}, "t-again")
    assert (topic, error["code"]) == ("j3/update/rejected", "InvalidStateTransition")
    assert error["executionState"]["status"] == "FAILED"
    service.cancel_job("j4")
    topic, error = thing.ask("j4/update", {"status": "SUCCEEDED"}, "t-canceled")
    assert (error["code"], service.status("j4", me)) == ("TerminalStateReached", "CANCELED")


def test_an_execution_in_progress_too_long_times_out(
    service: JobsService, thing: Thing, clock: FakeClock
) -> None:
    me = name_of(thing)
    service.create_job("j5", DOC, things=[me], timeout_minutes=10)
    thing.ask("start-next", {}, "t-start")
    clock.advance(9 * 60.0)
    service.tick()
    assert service.status("j5", me) == "IN_PROGRESS"
    clock.advance(60.0)
    service.tick()
    assert service.status("j5", me) == "TIMED_OUT"
    assert service.job_status("j5") == "COMPLETED"


def test_an_exponential_rollout_grows_as_devices_succeed(
    service: JobsService, clock: FakeClock
) -> None:
    group = [f"js-exp-{i}" for i in range(7)]
    service.add_group("exp", group)
    rollout = {
        "exponentialRate": {
            "baseRatePerMinute": 1,
            "incrementFactor": 2.0,
            "rateIncreaseCriteria": {"numberOfSucceededThings": 1},
        }
    }
    service.create_job("j6", DOC, groups=["exp"], rollout=rollout)

    def released() -> int:
        return sum(service.status("j6", t) is not None for t in group)

    assert released() == 1
    with pytest.raises(JobsError, match="already exists"):
        service.create_job("j6", DOC, groups=["exp"])
    service.publish_raw(f"$aws/things/{group[0]}/jobs/j6/update", b'{"status":"SUCCEEDED"}')
    assert service.wait_until(lambda: released() == 2, WAIT_S)  # rate 2 / minute now
    clock.advance(60.0)
    service.tick()
    assert released() == 4  # a new minute: 2 more
    assert [service.status("j6", t) for t in group[:4]] == [
        "SUCCEEDED",
        "QUEUED",
        "QUEUED",
        "QUEUED",
    ]


def test_create_job_refuses_what_aws_refuses(service: JobsService) -> None:
    with pytest.raises(JobsError, match="invalid job id"):
        service.create_job("bad id", DOC, things=["x"])
    with pytest.raises(JobsError, match="thing group nope not found"):
        service.create_job("j7", DOC, groups=["nope"])
    with pytest.raises(JobsError, match="limit is 32768"):
        service.create_job("j8", {"x": "y" * 33_000}, things=["x"])
    with pytest.raises(JobsError, match="invalid abort criterion"):
        service.create_job(
            "j9", DOC, things=["x"], abort=[{"failureType": "ANY", "action": "CANCEL"}]
        )


def test_the_jobs_command_runs_a_job_to_its_end_with_a_device(
    broker: Mosquitto, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "job.json"
    document.write_text(json.dumps({"operation": "config", "desired": {}}))
    transport = MqttTransport(
        broker.host,
        broker.tls_port,
        client_id="js-cli-dev",
        tls=TlsConfig(ca=pki.ca, cert=pki.client_cert, key=pki.client_key),
    )
    stop = threading.Event()
    decided: list[str] = []

    def config(desired: dict[str, Any], origin: str) -> Outcome:
        decided.append(origin)
        return Outcome("applied", None, "d" * 12)

    agent = JobsAgent(transport, "js-cli-dev", stop=stop, clock=SystemClock(), config=config)
    agent.attach()
    worker = threading.Thread(target=agent.run)
    worker.start()
    try:
        with transport:
            assert wait_until(lambda: transport.is_connected)
            code = simulator_main(
                ["jobs", "--host", broker.host, "--port", str(broker.port), "--job", "cli-1",
                 "--document", str(document), "--group", "cli-yard=js-cli-dev",
                 "--duration", "30"]
            )  # fmt: skip
    finally:
        stop.set()
        worker.join()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert lines[-1] == {"job": "cli-1", "status": "COMPLETED", "SUCCEEDED": 1}
    assert decided == ["job:cli-1"]
    bad = simulator_main(["jobs", "--job", "x", "--document", str(tmp_path / "none.json")])
    assert bad == 2
    assert capsys.readouterr().err.startswith("python -m simulator jobs: [Errno 2]")


def test_the_abort_rule_waits_for_enough_notified_devices(
    service: JobsService, clock: FakeClock
) -> None:
    group = ["js-min-1", "js-min-2", "js-min-3"]
    service.add_group("min", group)
    abort = [
        {"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 50,
         "minNumberOfExecutedThings": 2}
    ]  # fmt: skip
    service.create_job("j10", DOC, groups=["min"], rollout={"maximumPerMinute": 1}, abort=abort)
    service.publish_raw(f"$aws/things/{group[0]}/jobs/j10/update", b'{"status":"REJECTED"}')
    assert service.wait_until(lambda: service.status("j10", group[0]) == "REJECTED", WAIT_S)
    assert service.job_status("j10") == "IN_PROGRESS"  # 1 of 1 failed, but 1 notified < 2
    clock.advance(60.0)
    service.tick()  # the second device is notified: the rule applies, 1 of 1 finished failed
    assert service.job_status("j10") == "CANCELED"
    assert service.status("j10", group[1]) == "CANCELED"
    assert service.status("j10", group[2]) is None  # never released
