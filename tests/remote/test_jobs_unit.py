"""``JobsAgent`` over the in-memory transport (the shipped seam), and the job documents: what
the device answers to garbage, to an updater that raises, to a config thread that is busy."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edge_app.clock import SystemClock
from edge_app.domain import ModelRef
from edge_app.errors import FieldError
from edge_app.remote import Outcome
from edge_app.remote.jobdoc import (
    ConfigJob,
    JobDocumentError,
    ModelJob,
    parse_job_document,
    status_details,
)
from edge_app.remote.jobs import JobsAgent, JobTopics
from edge_app.uplink import InMemoryTransport
from tests.factories import wait_until
from tests.fakes import FakeUpdater

THING = "unit-cam"
TOPICS = JobTopics(THING)
OFFER = {
    "url": "https://models.example.com/m.tflite",
    "sha256": hashlib.sha256(b"m").hexdigest(),
    "size": 10,
    "name": "m",
    "version": "1",
}


def test_documents_parse_to_their_operation() -> None:
    model = parse_job_document({"operation": "model-update", "model": OFFER})
    assert isinstance(model, ModelJob)
    assert model.model.ref == "m@1"
    config = parse_job_document({"operation": "config", "desired": {"rules": []}})
    assert isinstance(config, ConfigJob)
    assert config.desired == {"rules": []}


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], "the job document must be a JSON object"),
        ({"operation": 5}, "unknown operation '5'"),
        ({"operation": "model-update", "model": {**OFFER, "sha256": "x"}}, "model.sha256"),
        ({"operation": "model-update", "model": {**OFFER, "size": 0}}, "model.size"),
        ({"operation": "config", "desired": []}, "desired: Input should be a valid dictionary"),
    ],
)
def test_bad_documents_say_what_is_wrong(document: Any, reason: str) -> None:
    with pytest.raises(JobDocumentError, match=None) as info:
        parse_job_document(document)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_status_details_are_always_what_aws_accepts() -> None:
    got = status_details(
        {"reason": "line one\nline two\x00", "bad key": "x", "stage": "", "long": "y" * 5000}
    )
    assert got["reason"] == "line one line two"
    assert "bad key" not in got
    assert "stage" not in got  # AWS refuses empty values
    assert len(got["long"]) <= 1024
    assert got["long"].startswith("y")
    assert "..." in got["long"]


def test_job_topics_name_answers_under_a_job() -> None:
    assert TOPICS.job_of(f"{TOPICS.prefix}/j-1/update/accepted") == ("j-1", "update/accepted")
    assert TOPICS.job_of(f"{TOPICS.prefix}/j-1/get/rejected") == ("j-1", "get/rejected")
    assert TOPICS.job_of(TOPICS.start_next_accepted) is None
    assert TOPICS.job_of("$aws/things/other/jobs/j-1/update/accepted") is None


class Harness:
    def __init__(self, **kwargs: Any) -> None:
        self.transport = InMemoryTransport()
        self.stop = threading.Event()
        self.agent = JobsAgent(self.transport, THING, stop=self.stop, clock=SystemClock(), **kwargs)
        self.agent.attach()
        self.transport.connect()
        self.thread = threading.Thread(target=self.agent.run)
        self.thread.start()

    def updates(self, job: str) -> list[dict[str, Any]]:
        topic = TOPICS.update(job)
        return [json.loads(m.payload) for m in self.transport.published if m.topic == topic]

    def start_nexts(self) -> int:
        return sum(m.topic == TOPICS.start_next for m in self.transport.published)

    def give(self, execution: Any) -> None:
        body = execution if isinstance(execution, bytes) else json.dumps({"execution": execution})
        self.transport.inject(
            TOPICS.start_next_accepted, body if isinstance(body, bytes) else body.encode()
        )


@pytest.fixture
def harness_factory() -> Iterator[Any]:
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(**kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop.set()
        h.thread.join()


def test_garbage_is_ignored_and_the_next_real_job_still_runs(harness_factory: Any) -> None:
    h = harness_factory(models=FakeUpdater(ModelRef("old", "0" * 12)))
    assert wait_until(lambda: h.start_nexts() == 1)  # asked on connect
    h.give(b"not json")
    h.give(b"[1, 2]")
    h.give({"status": "QUEUED"})  # no jobId
    h.give({"jobId": "../../x", "jobDocument": {}})  # not an AWS job id
    h.transport.inject(TOPICS.notify_next, b"\xff\xfe")
    h.give({"jobId": "real", "jobDocument": {"operation": "model-update", "model": OFFER}})
    assert wait_until(lambda: bool(h.updates("real")))
    assert h.updates("real")[-1]["status"] == "SUCCEEDED"
    published = {m.topic for m in h.transport.published}
    assert published <= {TOPICS.start_next, TOPICS.update("real")}


def test_an_updater_that_raises_fails_the_job_without_ending_the_agent(
    harness_factory: Any,
) -> None:
    class Broken:
        def update(self, offer: Any, *, origin: str, progress: Any = None) -> Any:
            raise RuntimeError("disk on fire")

    h = harness_factory(models=Broken())
    h.give({"jobId": "boom", "jobDocument": {"operation": "model-update", "model": OFFER}})
    assert wait_until(lambda: bool(h.updates("boom")))
    final = h.updates("boom")[-1]
    assert final["status"] == "FAILED"
    assert final["statusDetails"] == {"stage": "error", "reason": "internal error: RuntimeError"}
    assert "disk on fire" not in json.dumps(final)  # internals stay in the device's log
    h.give({"jobId": "after", "jobDocument": {"operation": "config", "desired": {}}})
    assert wait_until(lambda: bool(h.updates("after")))
    assert h.updates("after")[-1]["statusDetails"]["reason"] == "this device has no remote config"


def test_a_busy_config_thread_fails_the_job_saying_so(harness_factory: Any) -> None:
    def busy(desired: dict[str, Any], origin: str) -> Outcome:
        raise TimeoutError

    h = harness_factory(config=busy)
    h.give({"jobId": "slow", "jobDocument": {"operation": "config", "desired": {}}})
    assert wait_until(lambda: bool(h.updates("slow")))
    details = h.updates("slow")[-1]["statusDetails"]
    assert (details["stage"], details["reason"]) == (
        "timeout",
        "the config change did not finish in time (the config thread is busy)",
    )


def test_a_rejected_config_names_the_first_fields_and_counts_the_rest(
    harness_factory: Any,
) -> None:
    errors = tuple(FieldError(f"rules.{i}.zone", "no such zone") for i in range(7))

    def reject(desired: dict[str, Any], origin: str) -> Outcome:
        return Outcome("rejected", None, "d" * 12, errors)

    h = harness_factory(config=reject)
    h.give({"jobId": "bad-cfg", "jobDocument": {"operation": "config", "desired": {"rules": []}}})
    assert wait_until(lambda: bool(h.updates("bad-cfg")))
    final = h.updates("bad-cfg")[-1]
    assert final["status"] == "FAILED"
    assert final["statusDetails"]["reason"] == (
        "config rejected: "
        + "; ".join(f"rules.{i}.zone: no such zone" for i in range(5))
        + " (and 2 more)"
    )


def test_a_duplicate_execution_is_dropped_and_a_retry_runs_again(harness_factory: Any) -> None:
    updater = FakeUpdater(ModelRef("old", "0" * 12), refuse={"m": "download failed"})
    h = harness_factory(models=updater)
    document = {"operation": "model-update", "model": OFFER}
    h.give({"jobId": "retry", "executionNumber": 1, "jobDocument": document})
    h.give({"jobId": "retry", "executionNumber": 1, "jobDocument": document})  # duplicate
    h.give({"jobId": "retry", "executionNumber": 2, "jobDocument": document})  # AWS's retry
    assert wait_until(lambda: len(h.updates("retry")) == 2)
    assert [origin for _, origin in updater.calls] == ["job:retry", "job:retry"]
    assert [u["status"] for u in h.updates("retry")] == ["FAILED", "FAILED"]
