"""The device side of AWS IoT Jobs over any ``Transport``: model and config rollouts.

Topics (``JobTopics``), with ``J = $aws/things/{thing}/jobs`` (the AWS IoT Jobs MQTT API):

    subscribe  J/notify-next                 the next pending execution changed (or none left)
    publish    J/start-next                  {"clientToken", "statusDetails"}: start the next one
    subscribe  J/start-next/accepted         {"execution": {jobId, status, jobDocument, ...}}
    subscribe  J/start-next/rejected         {"code", "message", "clientToken"}
    publish    J/{jobId}/update              {"status", "statusDetails", "clientToken"}
    subscribe  J/+/update/accepted|rejected  the answers to our updates
    subscribe  J/+/get/accepted|rejected     answers to ``J/{jobId}/get`` (``describe``)

The flow is the AWS one: on every (re)connect, on a ``notify-next`` that names an execution and
after each finished job the agent asks ``start-next``; the service answers with the execution
it moved to IN_PROGRESS (an IN_PROGRESS one first: a job that was running when the device
restarted comes back) or with none. The agent runs it and reports SUCCEEDED, FAILED (the
attempt failed; ``statusDetails.reason`` says why) or REJECTED (the document is not one this
device runs). Running a job again is harmless: a model already running is ``unchanged`` and a
config already in force is applied again to the same effect, both SUCCEEDED.

Messages arrive on the network thread and are queued; ``run()`` (the ``jobs`` thread) handles
them one at a time, so a download never blocks MQTT. Duplicates are dropped: an execution this
process already ran (the same job id and ``executionNumber``) is not run again when a second
``start-next`` answer names it; a retry of a failed job (a new execution number) is. A final
update that cannot be sent (the link is down) is kept and sent first on the next connect.

``expectedVersion`` is not sent: the device is the only writer of its executions, and the one
change the cloud makes (cancel) is refused by the service as a terminal state anyway.
"""

from __future__ import annotations

__all__ = ["ConfigJobs", "JobResult", "JobTopics", "JobsAgent"]

import json
import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edge_app.clock import Clock
from edge_app.models.offer import ModelUpdates, UpdateResult
from edge_app.remote.handler import Outcome
from edge_app.remote.inbox import CONNECTED, Inbox
from edge_app.remote.jobdoc import (
    ConfigJob,
    JobDocumentError,
    ModelJob,
    parse_job_document,
    status_details,
)
from edge_app.uplink import Transport

log = logging.getLogger(__name__)

ConfigJobs = Callable[[dict[str, Any], str], Outcome]
"""Decides a config job's overlay (``desired``, ``origin``) on the remote-config thread, the
way a change made on the device is decided (``ShadowClient.local_change``): validated, applied,
persisted, audited, and written into the ``edge-config`` shadow as desired and reported."""

Final = Literal["SUCCEEDED", "FAILED", "REJECTED"]

NO_MODEL_UPDATER = "this device has no model updater"
"""The reason a model job fails with on a device built without one."""

_MAX_MESSAGE_BYTES = 128 * 1024  # the AWS IoT Core message limit
_SEND_WAIT_S = 10.0  # how long a final update waits for its PUBACK before it is kept
_PROGRESS_EVERY_S = 2.0  # at most one IN_PROGRESS progress update this often
_DONE_MAX = 64  # executions remembered as already run, for dropping duplicates
_JOB_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class JobTopics:
    """The MQTT topics of one thing's IoT Jobs (the AWS IoT Jobs device MQTT API)."""

    thing: str

    @property
    def prefix(self) -> str:
        return f"$aws/things/{self.thing}/jobs"

    @property
    def notify_next(self) -> str:
        return f"{self.prefix}/notify-next"

    @property
    def start_next(self) -> str:
        return f"{self.prefix}/start-next"

    @property
    def start_next_accepted(self) -> str:
        return f"{self.prefix}/start-next/accepted"

    @property
    def start_next_rejected(self) -> str:
        return f"{self.prefix}/start-next/rejected"

    def update(self, job_id: str) -> str:
        return f"{self.prefix}/{job_id}/update"

    def get(self, job_id: str) -> str:
        return f"{self.prefix}/{job_id}/get"

    @property
    def requests(self) -> tuple[str, ...]:
        """The topics the agent publishes to (``+``: any job id; the IoT policy writes ``*``)."""
        return (self.start_next, f"{self.prefix}/+/get", f"{self.prefix}/+/update")

    @property
    def subscribed(self) -> tuple[str, ...]:
        """The filters the agent subscribes to (``+``: any job id); the IoT policy lets it
        subscribe to and receive exactly these."""
        p = self.prefix
        return (
            self.notify_next,
            self.start_next_accepted,
            self.start_next_rejected,
            f"{p}/+/update/accepted",
            f"{p}/+/update/rejected",
            f"{p}/+/get/accepted",
            f"{p}/+/get/rejected",
        )

    def job_of(self, topic: str) -> tuple[str, str] | None:
        """(job id, ``update/accepted`` ...) of an answer topic under a job; None otherwise."""
        rest = topic.removeprefix(self.prefix + "/")
        parts = rest.split("/")
        if rest == topic or len(parts) != 3 or parts[1] not in ("update", "get"):
            return None
        return parts[0], f"{parts[1]}/{parts[2]}"


@dataclass(frozen=True, slots=True)
class JobResult:
    """What the agent reported for one execution (for tests, metrics and the log)."""

    job_id: str
    status: Final
    details: dict[str, str] = field(default_factory=dict)


class JobsAgent(Inbox):
    """Runs this thing's IoT Jobs from ``transport``, one at a time.

    ``config`` decides config jobs (None: such jobs FAIL, "no remote config"); ``models`` is
    the model updater (None: model jobs FAIL with ``NO_MODEL_UPDATER``). Call ``attach()``
    before the transport connects; run ``run()`` on a thread until ``stop`` is set.
    ``on_result`` (optional) is called on that thread after each final update is sent.
    """

    def __init__(
        self,
        transport: Transport,
        thing: str,
        *,
        stop: threading.Event,
        clock: Clock,
        config: ConfigJobs | None = None,
        models: ModelUpdates | None = None,
        on_result: Callable[[JobResult], None] | None = None,
    ) -> None:
        super().__init__(transport, stop=stop, name="jobs")
        self.topics = JobTopics(thing)
        self._clock = clock
        self._config = config
        self._models = models
        self._on_result = on_result
        # (job id, executionNumber) of each execution run: a retry (jobExecutionsRetryConfig)
        # is a new execution number of the same job and runs again.
        self._done: OrderedDict[tuple[str, int | None], Final] = OrderedDict()
        # A final update not yet acknowledged: (job id, body), sent first on the next connect.
        self._unsent: tuple[str, bytes] | None = None
        self._tokens = 0
        self.results: deque[JobResult] = deque(maxlen=_DONE_MAX)
        """The latest final results, oldest first (for tests and the log)."""

    # -- internals -------------------------------------------------------------------------

    def _subscribed(self) -> tuple[str, ...]:
        return self.topics.subscribed

    def _token(self) -> str:
        self._tokens += 1
        return f"edge-app-job-{self._tokens}"

    def _start_next(self) -> None:
        body = {"clientToken": self._token(), "statusDetails": {"stage": "started"}}
        self._transport.publish(self.topics.start_next, _json(body), qos=1)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        t = self.topics
        if topic == CONNECTED:
            if self._unsent is not None and not self._send_final(*self._unsent):
                return  # lost again: the next connect retries
            self._start_next()
            return
        if topic == t.notify_next:
            execution = _execution_of(payload)
            if execution is not None and _key(execution) not in self._done:
                self._start_next()
            return
        if topic == t.start_next_accepted:
            execution = _execution_of(payload)
            if execution is not None:
                self._execute(execution)
            return
        if topic == t.start_next_rejected:
            log.warning("start-next refused: %s", payload[:300].decode(errors="replace"))
            return
        answer = t.job_of(topic)
        if answer is None:
            return
        job_id, kind = answer
        if kind == "update/rejected":
            log.warning(
                "job %s: update refused: %s", job_id, payload[:300].decode(errors="replace")
            )
        final = kind.startswith("update/") and any(done == job_id for done, _ in self._done)
        if final and _is_final_answer(payload):
            self._start_next()  # the next job, if there is one

    def _execute(self, execution: dict[str, Any]) -> None:
        job_id = execution.get("jobId")
        if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
            log.warning("execution without a valid jobId ignored: %.100r", job_id)
            return
        key = _key(execution)
        if key in self._done:
            log.info("job %s already run by this process: duplicate dropped", job_id)
            return
        log.info("job %s: started (%s)", job_id, execution.get("status"))
        status, details = self._outcome(job_id, execution.get("jobDocument"))
        self._remember(key, status)
        sent = status_details(details)
        body = {"status": status, "statusDetails": sent, "clientToken": f"final-{job_id}"[:64]}
        result = JobResult(job_id, status, sent)
        self.results.append(result)
        log.info("job %s: %s %s", job_id, status, details.get("reason", ""))
        self._send_final(job_id, _json(body))
        if self._on_result is not None:
            self._on_result(result)

    def _outcome(self, job_id: str, document: Any) -> tuple[Final, dict[str, str]]:
        """Run the job; never raises (an unexpected error FAILS the job, with its kind)."""
        try:
            job = parse_job_document(document)
        except JobDocumentError as exc:
            return "REJECTED", {"stage": "rejected", "reason": str(exc)}
        try:
            if isinstance(job, ModelJob):
                return self._model_job(job_id, job)
            return self._config_job(job_id, job)
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job_id)
            return "FAILED", {"stage": "error", "reason": f"internal error: {type(exc).__name__}"}

    def _model_job(self, job_id: str, job: ModelJob) -> tuple[Final, dict[str, str]]:
        offer = job.model
        if self._models is None:
            return "FAILED", {"stage": "rejected", "reason": NO_MODEL_UPDATER}
        result = self._models.update(offer, origin=f"job:{job_id}", progress=self._progress(job_id))
        details = {"stage": str(result.state), "model": _model_text(result)}
        if result.agreement is not None:
            details["agreement"] = f"{result.agreement:.3f}"
        if result.ok:
            return "SUCCEEDED", details
        details["reason"] = result.reason or f"model update {result.state}"
        return "FAILED", details

    def _config_job(self, job_id: str, job: ConfigJob) -> tuple[Final, dict[str, str]]:
        if self._config is None:
            return "FAILED", {"stage": "rejected", "reason": "this device has no remote config"}
        try:
            outcome = self._config(job.desired, f"job:{job_id}")
        except TimeoutError:
            why = "the config change did not finish in time (the config thread is busy)"
            return "FAILED", {"stage": "timeout", "reason": why}
        details = {"stage": outcome.status, "config_digest": outcome.digest}
        if outcome.status in ("applied", "unchanged"):
            return "SUCCEEDED", details
        shown = "; ".join(f"{e.path or '<root>'}: {e.message}" for e in outcome.errors[:5])
        more = len(outcome.errors) - min(5, len(outcome.errors))
        details["reason"] = (
            f"config rejected: {shown}" + (f" (and {more} more)" if more else "")
            if shown
            else f"config {outcome.status}"
        )
        return "FAILED", details

    def _progress(self, job_id: str) -> Callable[[str], None]:
        """A progress callback: IN_PROGRESS updates with the stage, at most every 2 s."""
        last_at, last_stage = [float("-inf")], [""]

        def note(stage: str) -> None:
            now = self._clock.monotonic()
            if stage == last_stage[0] or now - last_at[0] < _PROGRESS_EVERY_S:
                return
            last_at[0], last_stage[0] = now, stage
            body = {"status": "IN_PROGRESS", "statusDetails": status_details({"stage": stage})}
            if self._transport.is_connected:
                self._transport.publish(self.topics.update(job_id), _json(body), qos=1)

        return note

    def _send_final(self, job_id: str, body: bytes) -> bool:
        """Publish a final update and wait for its PUBACK; kept for the next connect if the
        link is down or drops first. True once acknowledged."""
        self._unsent = (job_id, body)
        if not self._transport.is_connected:
            log.warning("job %s: final status kept until the link is back", job_id)
            return False
        handle = self._transport.publish(self.topics.update(job_id), body, qos=1)
        if handle.wait(_SEND_WAIT_S) and handle.ok:
            self._unsent = None
            return True
        log.warning("job %s: final status not acknowledged; sent again on reconnect", job_id)
        return False

    def _remember(self, key: tuple[str, int | None], status: Final) -> None:
        self._done[key] = status
        while len(self._done) > _DONE_MAX:
            self._done.popitem(last=False)


def _key(execution: dict[str, Any]) -> tuple[str, int | None]:
    """(jobId, executionNumber) of an execution document: which run of which job."""
    number = execution.get("executionNumber")
    valid = isinstance(number, int) and not isinstance(number, bool)
    return str(execution.get("jobId")), number if valid else None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _execution_of(payload: bytes) -> dict[str, Any] | None:
    """The ``execution`` of a notify-next or start-next answer (None: none, or unreadable)."""
    if len(payload) > _MAX_MESSAGE_BYTES:
        log.warning(
            "jobs message of %d bytes ignored (at most %d)", len(payload), _MAX_MESSAGE_BYTES
        )
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        log.warning("jobs message is not JSON: %.100r", payload)
        return None
    execution = doc.get("execution") if isinstance(doc, dict) else None
    return execution if isinstance(execution, dict) else None


def _is_final_answer(payload: bytes) -> bool:
    """Whether an update answer is for one of our final updates (its client token)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    token = doc.get("clientToken") if isinstance(doc, dict) else None
    return isinstance(token, str) and token.startswith("final-")


def _model_text(result: UpdateResult) -> str:
    model = result.model
    version = f"@{model.version}" if model.version else ""
    return f"{model.name}{version} ({model.sha256})"
