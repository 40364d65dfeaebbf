"""An AWS IoT Jobs service emulator over MQTT (the device MQTT API) with a control-plane API.

Against a real broker (Mosquitto in tests) it plays the Jobs service for every thing, like
``simulator.shadow`` plays the shadow service. Devices talk the AWS IoT Jobs MQTT API:

* requests on ``$aws/things/{thing}/jobs/get`` (pending executions), ``.../start-next``,
  ``.../{jobId}/get`` (``$next``: the next pending one) and ``.../{jobId}/update``;
* answers on ``<request>/accepted`` with AWS's documents (``execution``: jobId, thingName,
  status, statusDetails, queuedAt, startedAt, lastUpdatedAt, versionNumber, executionNumber,
  jobDocument) or ``<request>/rejected`` with ``{"code", "message", "clientToken",
  "timestamp"}`` and AWS's codes: InvalidTopic, InvalidJson, InvalidRequest,
  InvalidStateTransition (with ``executionState``), ResourceNotFound, VersionMismatch,
  TerminalStateReached;
* ``notify-next`` whenever a thing's next pending execution changes (without ``execution``
  once none is left) and ``notify`` with the pending list.

The cloud side is Python (``create_job``, ``cancel_job``, ``describe_job``, ``list_jobs``,
``executions``, ``status``), shaped like the IoT control plane: targets are things and thing
groups (``add_group``); ``rollout`` is ``jobExecutionsRolloutConfig`` (``maximumPerMinute``,
``exponentialRate`` with ``baseRatePerMinute``, ``incrementFactor``, ``rateIncreaseCriteria``),
``abort`` is ``abortConfig.criteriaList`` (failureType FAILED | REJECTED | TIMED_OUT | ALL,
action CANCEL, thresholdPercentage of the finished executions, once minNumberOfExecutedThings
things were notified), ``timeout_minutes`` is ``timeoutConfig.inProgressTimeoutInMinutes``.

Time is the ``clock`` given (``time.monotonic`` by default): executions are released per
minute of it and time out by it. Every request and ``tick()`` apply the rollout and timeouts,
so a test with a fake clock advances it and calls ``tick()``, and waits on conditions
(``wait_until``), never on real time. Aborting cancels the job and its QUEUED executions
(IN_PROGRESS ones run on and may still report, as with AWS's cancel without force); targets
not yet released get no execution. ``python -m simulator jobs`` runs it (``simulator.jobs_cli``).
"""

from __future__ import annotations

__all__ = ["TERMINAL", "JobsError", "JobsService"]

import copy
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from simulator.peer import SubscribingPeer

log = logging.getLogger(__name__)

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"})
"""Execution statuses nothing leaves."""
_DEVICE_SETS = frozenset({"IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"})
_MAX_DOCUMENT_BYTES = 32 * 1024
_JOB_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DETAIL_KEY = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
_FAILURES = {"FAILED": {"FAILED"}, "REJECTED": {"REJECTED"}, "TIMED_OUT": {"TIMED_OUT"}}
_FAILURES["ALL"] = {"FAILED", "REJECTED", "TIMED_OUT"}


class JobsError(ValueError):
    """A control-plane request the service refuses (bad id, unknown job, oversized document)."""


@dataclass
class _Execution:
    job_id: str
    thing: str
    number: int
    queued_at: float
    status: str = "QUEUED"
    details: dict[str, str] = field(default_factory=dict)
    version: int = 1
    started_at: float | None = None
    updated_at: float = 0.0

    def state(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "statusDetails": dict(self.details),
            "versionNumber": self.version,
        }

    def document(
        self, job_document: Mapping[str, Any] | None, wall: Callable[[float], int]
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "jobId": self.job_id,
            "thingName": self.thing,
            "status": self.status,
            "statusDetails": dict(self.details),
            "queuedAt": wall(self.queued_at),
            "lastUpdatedAt": wall(self.updated_at or self.queued_at),
            "versionNumber": self.version,
            "executionNumber": self.number,
        }
        if self.started_at is not None:
            doc["startedAt"] = wall(self.started_at)
        if job_document is not None:
            doc["jobDocument"] = copy.deepcopy(job_document)
        return doc


@dataclass
class _Job:
    job_id: str
    document: dict[str, Any]
    targets: list[str]  # the things, groups expanded, in order
    created: float
    rollout: dict[str, Any]
    abort: list[dict[str, Any]]
    timeout_s: float | None
    status: str = "IN_PROGRESS"
    reason: str = ""
    released: int = 0  # how many targets got an execution
    window_start: float = 0.0
    window_released: int = 0
    rate: float = math.inf
    since_increase: int = 0  # notified or succeeded things since the rate last grew


class JobsService(SubscribingPeer):
    """The IoT Jobs service for every thing, on the broker at ``host:port`` (plain listener).

    Use as a context manager. Thread-safe. ``clock`` is a monotonic time source in seconds
    (a ``FakeClock().monotonic`` in tests); ``max_document_bytes`` lets a test create an
    oversized document that AWS would refuse at ``create_job``.
    """

    name = "jobs service"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "jobs-service",
        clock: Callable[[], float] = time.monotonic,
        max_document_bytes: int = _MAX_DOCUMENT_BYTES,
    ) -> None:
        topics = [("$aws/things/+/jobs/#", 1)]
        super().__init__(host, port, topics, client_id=client_id)
        self._clock = clock
        self._epoch = time.time() - clock()
        self._max_doc = max_document_bytes
        self._lock = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._groups: dict[str, list[str]] = {}
        self._executions: dict[tuple[str, str], _Execution] = {}  # (job, thing)
        self._numbers: dict[str, int] = {}  # per thing, the last executionNumber
        self._next: dict[str, str | None] = {}  # per thing, the job notify-next last named
        self.requests = 0

    # -- control plane -----------------------------------------------------------------------

    def add_group(self, group: str, things: Iterable[str]) -> None:
        """Create (or extend) thing group ``group`` with ``things``."""
        with self._lock:
            members = self._groups.setdefault(group, [])
            members.extend(t for t in things if t not in members)

    def create_job(
        self,
        job_id: str,
        document: Mapping[str, Any],
        *,
        things: Sequence[str] = (),
        groups: Sequence[str] = (),
        rollout: Mapping[str, Any] | None = None,
        abort: Sequence[Mapping[str, Any]] = (),
        timeout_minutes: float | None = None,
    ) -> dict[str, Any]:
        """Create a snapshot job for ``things`` and the members of ``groups``; executions are
        released per ``rollout`` at once and then on each request or ``tick()``. Returns
        ``{"jobId", "jobArn"}``; ``JobsError`` for a bad or duplicate id, an unknown group,
        no target, an oversized document or a bad abort criterion."""
        if not _JOB_ID.match(job_id):
            raise JobsError(f"invalid job id {job_id!r}: 1-64 of a-z A-Z 0-9 _ -")
        size = len(json.dumps(document, separators=(",", ":")))
        if size > self._max_doc:
            raise JobsError(f"job document is {size} bytes; the limit is {self._max_doc}")
        for criterion in abort:
            if criterion.get("action") != "CANCEL" or criterion.get("failureType") not in _FAILURES:
                raise JobsError(f"invalid abort criterion {dict(criterion)}")
        with self._lock:
            if job_id in self._jobs:
                raise JobsError(f"job {job_id} already exists")
            targets: list[str] = list(dict.fromkeys(things))
            for group in groups:
                if group not in self._groups:
                    raise JobsError(f"thing group {group} not found")
                targets += [t for t in self._groups[group] if t not in targets]
            if not targets:
                raise JobsError("a job needs at least one target")
            job = _Job(
                job_id,
                copy.deepcopy(dict(document)),
                targets,
                self._clock(),
                dict(rollout or {}),
                [dict(c) for c in abort],
                None if timeout_minutes is None else timeout_minutes * 60.0,
            )
            job.window_start = job.created
            job.rate = _initial_rate(job.rollout)
            self._jobs[job_id] = job
            sends = self._release(job)
            self._lock.notify_all()
        self._flush(sends)
        return {"jobId": job_id, "jobArn": f"arn:aws:iot:us-east-1:123456789012:job/{job_id}"}

    def cancel_job(self, job_id: str, reason: str = "canceled by the operator") -> None:
        """Cancel ``job_id``: the job CANCELED, its QUEUED executions CANCELED."""
        with self._lock:
            job = self._job(job_id)
            sends = self._cancel(job, reason)
            self._lock.notify_all()
        self._flush(sends)

    def tick(self) -> None:
        """Apply rollouts and timeouts as of the clock now (requests do it too)."""
        with self._lock:
            sends = self._advance()
            self._lock.notify_all()
        self._flush(sends)

    def describe_job(self, job_id: str) -> dict[str, Any]:
        """``{"jobId", "status", "reasonCode", "targets", "jobProcessDetails"}``."""
        with self._lock:
            job = self._job(job_id)
            counts: dict[str, int] = {}
            for ex in self._executions_of(job):
                counts[ex.status] = counts.get(ex.status, 0) + 1
            return {
                "jobId": job.job_id,
                "status": job.status,
                "reasonCode": job.reason,
                "targets": list(job.targets),
                "document": copy.deepcopy(job.document),
                "jobProcessDetails": {
                    f"numberOf{_camel(s)}Things": counts.get(s, 0)
                    for s in ("QUEUED", "IN_PROGRESS", *sorted(TERMINAL))
                },
            }

    def list_jobs(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"jobId": j.job_id, "status": j.status} for j in self._jobs.values()]

    def executions(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Thing -> ``{"status", "statusDetails", "versionNumber"}`` of the job's executions."""
        with self._lock:
            return {ex.thing: ex.state() for ex in self._executions_of(self._job(job_id))}

    def status(self, job_id: str, thing: str) -> str | None:
        """The execution status of ``thing`` for ``job_id`` (None: no execution yet)."""
        with self._lock:
            ex = self._executions.get((job_id, thing))
            return None if ex is None else ex.status

    def job_status(self, job_id: str) -> str:
        with self._lock:
            return self._job(job_id).status

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` holds (checked after every change), or ``timeout``."""
        with self._lock:
            return self._lock.wait_for(predicate, timeout=timeout)

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish anything on any topic (a crafted notify-next, say), QoS 1."""
        self._client.publish(topic, payload, qos=1).wait_for_publish(5.0)

    # -- device API ----------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        # $aws / things / {thing} / jobs / ...
        if len(parts) < 5 or parts[3] != "jobs" or parts[-1] in ("accepted", "rejected"):
            return
        if parts[4] in ("notify", "notify-next"):
            return  # our own notifications
        self.requests += 1
        thing, rest = parts[2], parts[4:]
        payload = bytes(msg.payload)
        with self._lock:
            sends = self._advance()
            sends += self._request(thing, rest, payload, msg.topic)
            self._lock.notify_all()
        self._flush(sends)

    def _request(  # noqa: PLR0911 - one return per API
        self, thing: str, rest: list[str], payload: bytes, topic: str
    ) -> list[_Send]:
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            return [self._error(topic, "InvalidJson", "the payload is not valid JSON", None)]
        if not isinstance(body, dict):
            return [self._error(topic, "InvalidJson", "the payload must be a JSON object", None)]
        raw_token = body.get("clientToken")
        token = raw_token if isinstance(raw_token, str) and len(raw_token) <= 64 else None
        if rest == ["get"]:
            return [self._pending(thing, topic, token)]
        if rest == ["start-next"]:
            return self._start_next(thing, topic, body, token)
        if len(rest) == 2 and rest[1] == "get":
            return [self._describe(thing, rest[0], topic, body, token)]
        if len(rest) == 2 and rest[1] == "update":
            return self._update(thing, rest[0], topic, body, token)
        return [self._error(topic, "InvalidTopic", f"no Jobs API at {topic}", token)]

    def _pending(self, thing: str, topic: str, token: str | None) -> _Send:
        pending = self._pending_of(thing)
        answer: dict[str, Any] = {
            "inProgressJobs": [self._summary(ex) for ex in pending if ex.status == "IN_PROGRESS"],
            "queuedJobs": [self._summary(ex) for ex in pending if ex.status == "QUEUED"],
            "timestamp": self._wall(self._clock()),
        }
        return self._accepted(topic, answer, token)

    def _start_next(
        self, thing: str, topic: str, body: dict[str, Any], token: str | None
    ) -> list[_Send]:
        details = body.get("statusDetails", {})
        if not _valid_details(details):
            return [self._error(topic, "InvalidRequest", "invalid statusDetails", token)]
        pending = self._pending_of(thing)
        answer: dict[str, Any] = {"timestamp": self._wall(self._clock())}
        sends: list[_Send] = []
        if pending:
            ex = pending[0]
            if ex.status == "QUEUED":
                now = self._clock()
                ex.status, ex.started_at, ex.updated_at = "IN_PROGRESS", now, now
                ex.details.update(details)
                ex.version += 1
            answer["execution"] = ex.document(self._jobs[ex.job_id].document, self._wall)
            sends += self._notify(thing)
        sends.insert(0, self._accepted(topic, answer, token))
        return sends

    def _describe(
        self, thing: str, job_id: str, topic: str, body: dict[str, Any], token: str | None
    ) -> _Send:
        if job_id == "$next":
            pending = self._pending_of(thing)
            ex: _Execution | None = pending[0] if pending else None
            if ex is None:
                return self._accepted(topic, {"timestamp": self._wall(self._clock())}, token)
        else:
            ex = self._executions.get((job_id, thing))
        if ex is None:
            why = f"job execution {job_id} of {thing} not found"
            return self._error(topic, "ResourceNotFound", why, token)
        include = body.get("includeJobDocument", True) is not False
        document = self._jobs[ex.job_id].document if include else None
        answer = {
            "execution": ex.document(document, self._wall),
            "timestamp": self._wall(self._clock()),
        }
        return self._accepted(topic, answer, token)

    def _update(
        self, thing: str, job_id: str, topic: str, body: dict[str, Any], token: str | None
    ) -> list[_Send]:
        ex = self._executions.get((job_id, thing))
        if ex is None:
            why = f"job execution {job_id} of {thing} not found"
            return [self._error(topic, "ResourceNotFound", why, token)]
        status = body.get("status")
        if status not in _DEVICE_SETS:
            why = f"status must be one of {sorted(_DEVICE_SETS)}, not {status!r}"
            return [self._error(topic, "InvalidRequest", why, token)]
        details = body.get("statusDetails", {})
        if not _valid_details(details):
            why = "statusDetails must map keys [a-zA-Z0-9:_-]{1,128} to 1-1024 printable characters"
            return [self._error(topic, "InvalidRequest", why, token)]
        expected = body.get("expectedVersion")
        if expected is not None and expected != ex.version:
            return [self._error(topic, "VersionMismatch", "expectedVersion differs", token, ex)]
        if ex.status in TERMINAL:
            code = "TerminalStateReached" if ex.status == "CANCELED" else "InvalidStateTransition"
            why = f"the job execution is {ex.status}"
            return [self._error(topic, code, why, token, ex)]
        now = self._clock()
        if ex.started_at is None:
            ex.started_at = now
        ex.status, ex.updated_at = status, now
        ex.details.update(details)
        ex.version += 1
        answer: dict[str, Any] = {"timestamp": self._wall(now)}
        if body.get("includeJobExecutionState"):
            answer["executionState"] = ex.state()
        if body.get("includeJobDocument"):
            answer["jobDocument"] = copy.deepcopy(self._jobs[job_id].document)
        sends = [self._accepted(topic, answer, token)]
        if status in TERMINAL:
            job = self._jobs[job_id]
            criteria = job.rollout.get("exponentialRate", {}).get("rateIncreaseCriteria", {})
            if status == "SUCCEEDED" and "numberOfSucceededThings" in criteria:
                job.since_increase += 1
            sends += self._notify(thing)
            sends += self._check_abort(job)
            sends += self._release(job)
            self._complete_if_done(job)
        return sends

    # -- internals (under the lock) ------------------------------------------------------------

    def _job(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobsError(f"job {job_id} not found")
        return job

    def _executions_of(self, job: _Job) -> list[_Execution]:
        return [
            self._executions[(job.job_id, t)]
            for t in job.targets
            if (job.job_id, t) in self._executions
        ]

    def _pending_of(self, thing: str) -> list[_Execution]:
        """The thing's QUEUED and IN_PROGRESS executions, IN_PROGRESS first, then by queue time."""
        pending = [
            ex
            for (_, t), ex in self._executions.items()
            if t == thing and ex.status in ("QUEUED", "IN_PROGRESS")
        ]
        return sorted(pending, key=lambda ex: (ex.status != "IN_PROGRESS", ex.queued_at, ex.number))

    def _advance(self) -> list[_Send]:
        sends: list[_Send] = []
        now = self._clock()
        for job in self._jobs.values():
            if job.timeout_s is not None:
                for ex in self._executions_of(job):
                    started = ex.started_at
                    if (
                        ex.status == "IN_PROGRESS"
                        and started is not None
                        and now - started >= job.timeout_s
                    ):
                        ex.status, ex.updated_at = "TIMED_OUT", now
                        ex.version += 1
                        sends += self._notify(ex.thing)
                        sends += self._check_abort(job)
            sends += self._release(job)
            sends += self._check_abort(job)  # more notified things may bring the rule in
            self._complete_if_done(job)
        return sends

    def _release(self, job: _Job) -> list[_Send]:
        """Give executions to the next targets as the rollout allows now."""
        if job.status != "IN_PROGRESS":
            return []
        now = self._clock()
        if now - job.window_start >= 60.0:
            minutes = int((now - job.window_start) // 60.0)
            job.window_start += 60.0 * minutes
            job.window_released = 0
        self._grow_rate(job)
        sends: list[_Send] = []
        while job.released < len(job.targets) and job.window_released < job.rate:
            thing = job.targets[job.released]
            job.released += 1
            job.window_released += 1
            number = self._numbers.get(thing, 0) + 1
            self._numbers[thing] = number
            self._executions[(job.job_id, thing)] = _Execution(
                job.job_id, thing, number, now, updated_at=now
            )
            criteria = job.rollout.get("exponentialRate", {}).get("rateIncreaseCriteria", {})
            if "numberOfNotifiedThings" in criteria:
                job.since_increase += 1
            sends += self._notify(thing)
        return sends

    def _grow_rate(self, job: _Job) -> None:
        exp = job.rollout.get("exponentialRate")
        if not exp:
            return
        criteria = exp.get("rateIncreaseCriteria", {})
        needed = criteria.get("numberOfNotifiedThings") or criteria.get("numberOfSucceededThings")
        if needed and job.since_increase >= int(needed):
            job.since_increase = 0
            grown = math.ceil(job.rate * float(exp.get("incrementFactor", 2.0)))
            job.rate = min(grown, float(job.rollout.get("maximumPerMinute", math.inf)))

    def _check_abort(self, job: _Job) -> list[_Send]:
        if job.status != "IN_PROGRESS":
            return []
        # AWS: the rule applies once minNumberOfExecutedThings things were notified (got an
        # execution); the share is of the executions that finished.
        done = [ex for ex in self._executions_of(job) if ex.status in TERMINAL]
        for criterion in job.abort:
            failed = sum(1 for ex in done if ex.status in _FAILURES[criterion["failureType"]])
            enough = job.released >= int(criterion.get("minNumberOfExecutedThings", 1))
            if (
                enough
                and done
                and 100.0 * failed / len(done) >= float(criterion["thresholdPercentage"])
            ):
                why = f"{criterion['failureType']} reached {100.0 * failed / len(done):.0f} %"
                return self._cancel(job, f"aborted: {why}")
        return []

    def _cancel(self, job: _Job, reason: str) -> list[_Send]:
        if job.status != "IN_PROGRESS":
            return []
        job.status, job.reason = "CANCELED", reason
        sends: list[_Send] = []
        now = self._clock()
        for ex in self._executions_of(job):
            if ex.status == "QUEUED":
                ex.status, ex.updated_at = "CANCELED", now
                ex.version += 1
                sends += self._notify(ex.thing)
        log.info("job %s canceled: %s", job.job_id, reason)
        return sends

    def _complete_if_done(self, job: _Job) -> None:
        if job.status != "IN_PROGRESS" or job.released < len(job.targets):
            return
        if all(ex.status in TERMINAL for ex in self._executions_of(job)):
            job.status = "COMPLETED"

    def _notify(self, thing: str) -> list[_Send]:
        """``notify`` with the pending list, and ``notify-next`` if the next one changed."""
        pending = self._pending_of(thing)
        prefix = f"$aws/things/{thing}/jobs"
        now = self._wall(self._clock())
        listing = {
            "IN_PROGRESS": [self._summary(ex) for ex in pending if ex.status == "IN_PROGRESS"],
            "QUEUED": [self._summary(ex) for ex in pending if ex.status == "QUEUED"],
        }
        sends = [_Send(prefix + "/notify", {"timestamp": now, "jobs": listing})]
        head = pending[0].job_id if pending else None
        if self._next.get(thing) != head:
            self._next[thing] = head
            body: dict[str, Any] = {"timestamp": now}
            if pending:
                ex = pending[0]
                body["execution"] = ex.document(self._jobs[ex.job_id].document, self._wall)
            sends.append(_Send(prefix + "/notify-next", body))
        return sends

    def _summary(self, ex: _Execution) -> dict[str, Any]:
        return {
            "jobId": ex.job_id,
            "queuedAt": self._wall(ex.queued_at),
            "lastUpdatedAt": self._wall(ex.updated_at),
            "versionNumber": ex.version,
            "executionNumber": ex.number,
        }

    def _accepted(self, request: str, answer: dict[str, Any], token: str | None) -> _Send:
        if token is not None:
            answer["clientToken"] = token
        return _Send(request + "/accepted", answer)

    def _error(
        self, request: str, code: str, message: str, token: str | None, ex: _Execution | None = None
    ) -> _Send:
        body: dict[str, Any] = {
            "code": code,
            "message": message,
            "timestamp": self._wall(self._clock()),
        }
        if token is not None:
            body["clientToken"] = token
        if ex is not None:
            body["executionState"] = ex.state()
        return _Send(request + "/rejected", body)

    def _wall(self, mono: float) -> int:
        return int(self._epoch + mono)

    def _flush(self, sends: list[_Send]) -> None:
        for send in sends:
            self._client.publish(send.topic, json.dumps(send.body, separators=(",", ":")), qos=1)


@dataclass(frozen=True, slots=True)
class _Send:
    topic: str
    body: dict[str, Any]


def _initial_rate(rollout: Mapping[str, Any]) -> float:
    exp = rollout.get("exponentialRate")
    cap = float(rollout.get("maximumPerMinute", math.inf))
    if exp:
        return min(float(exp["baseRatePerMinute"]), cap)
    return cap


def _valid_details(details: Any) -> bool:
    if not isinstance(details, dict):
        return False
    for key, value in details.items():
        if not _DETAIL_KEY.match(key) or not isinstance(value, str):
            return False
        if not 1 <= len(value) <= 1024 or not value.isprintable():
            return False
    return True


def _camel(status: str) -> str:
    return "".join(part.capitalize() for part in status.split("_"))
