"""A fleet rollout: ``python -m simulator fleet --replay CLIP --rollout``.

The scenario of a model rollout to a fleet of replay devices (``simulator.fleetreplay``, the
real daemon on a looping clip), run through the ``Fleet``'s phase hooks:

* before the fleet is built, a real HTTP file server (``simulator.files``) serves the models,
  and every device's local ``model_updates`` allows its URL prefix (nothing else);
* ``connect``: the IoT Jobs emulator (``simulator.jobs``) joins the fleet's broker on its plain
  listener (as the AWS service would), with thing group ``fleet`` of every device; the devices'
  Jobs agents talk to it over their own mutual-TLS links, within the device policy's ACL;
* ``run``: once every device has processed frames (the updater test-runs on recent ones),
  1. a **bad model** job (a corrupt copy of the running model by default: its own sha256, so
     the download verifies and the load fails) to the group, staged one device per minute
     (the canary) with an abort rule (FAILED >= 50 % once one device was notified): the
     canary FAILS with the updater's reason, its model untouched; the job is CANCELED and no
     other device ever gets an execution;
  2. a **good model** job (the running model again as a new version, or ``--new-model``) to
     the whole group: every device SUCCEEDED; timed from the job's creation to the last
     SUCCEEDED; each device's ``/status`` and its next events delivered to the cloud must
     name the new model;
  then every device's capture ends (the clip loops until then) and the fleet drains as usual;
* ``report``: frames lost per device (read by the camera loop but neither processed nor
  skipped on purpose, from the daemon's own counters; goal 0).

``RolloutReport.ok`` is whether every expectation held; ``problems`` says which did not.
"""

from __future__ import annotations

__all__ = ["DeviceRollout", "Rollout", "RolloutPlan", "RolloutReport", "corrupt_copy"]

import json
import re
import shutil
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from edge_app.models import load_manifest
from edge_app.models.catalog import sha256_file
from edge_app.models.offer import FileOffer, ModelOffer
from edge_app.updates.record import UpdateRecord
from simulator.files import FileServer
from simulator.jobs import TERMINAL, JobsService

if TYPE_CHECKING:
    from simulator.fleetreplay import ReplayDevice
    from simulator.fleetsim import Fleet

GROUP = "fleet"
"""The thing group of every device of the fleet."""
ABORT_RULE = {
    "failureType": "FAILED",
    "action": "CANCEL",
    "thresholdPercentage": 50,
    "minNumberOfExecutedThings": 1,
}
CANARY_ROLLOUT = {"maximumPerMinute": 1}
"""One device per minute: the first is the canary, the abort rule stops the rest."""
_WARM_FRAMES = 15  # frames every device processes before the first job (its test-run frames)
_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """What to roll out: ``new_model`` (None: the running model as a new version) with
    ``new_labels``; ``bad_model`` for the canary (None: a corrupt copy of the running one);
    ``timeout_s`` bounds each wait of the scenario."""

    new_model: Path | None = None
    new_labels: Path | None = None
    bad_model: Path | None = None
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        for flag, path in (
            ("--new-model", self.new_model),
            ("--new-labels", self.new_labels),
            ("--bad-model", self.bad_model),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{flag} {path}: no such file")
        if self.new_labels is not None and self.new_model is None:
            raise ValueError("--new-labels goes with --new-model")


@dataclass(slots=True)
class DeviceRollout:
    """One device's part: its executions of both jobs and what ran before and after."""

    thing: str
    canary: bool
    bad_status: str | None = None
    bad_reason: str = ""
    status: str | None = None
    reason: str = ""
    model_before: str = ""
    model_after: str = ""
    status_model: str = ""
    """The model ``/status`` names after the rollout."""
    succeeded_s: float | None = None
    """Seconds from the good job's creation to this device's SUCCEEDED."""
    new_events: int = 0
    """Events delivered after its SUCCEEDED (their models checked)."""
    events_on_new: bool = False
    lost_frames: int = -1
    agreement: float | None = None
    """The new model's test-run agreement with the running one (0..1)."""
    stages_s: dict[str, float] = field(default_factory=dict)
    """The updater's own timings of the good job: download, test run, switch, health watch."""


@dataclass(slots=True)
class RolloutReport:
    """The scenario's outcome: per device, both jobs, and whether it went as expected."""

    devices: list[DeviceRollout] = field(default_factory=list)
    bad_job: dict[str, Any] = field(default_factory=dict)
    good_job: dict[str, Any] = field(default_factory=dict)
    new_model: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.devices)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def corrupt_copy(model: Path, target: Path) -> Path:
    """``model`` with its FlatBuffer file identifier (bytes 4-8, ``TFL3``) overwritten: the
    same size, its own sha256, and no interpreter will load it."""
    data = bytearray(model.read_bytes())
    data[4:8] = b"XXXX"
    target.write_bytes(bytes(data))
    return target


class Rollout:
    """The rollout scenario for a replay ``Fleet`` of the running ``model``; files in
    ``workdir``. Use as a context manager around ``Fleet.run`` (it serves the models), give
    ``model_updates`` to the ``Fleet`` and ``on_phase`` as its hook; ``report`` afterwards."""

    def __init__(
        self,
        plan: RolloutPlan,
        workdir: Path,
        model: Path,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.report = RolloutReport()
        self._model = model
        self._folder = workdir / "www"
        self._say = progress or (lambda _text: None)
        self._www: FileServer | None = None
        self._jobs: JobsService | None = None
        self._suffix = time.strftime("%H%M%S")

    def __enter__(self) -> Self:
        shutil.rmtree(self._folder, ignore_errors=True)
        self._folder.mkdir(parents=True)
        self._www = FileServer(self._folder).__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._jobs is not None:
            self._jobs.__exit__(None, None, None)
            self._jobs = None
        if self._www is not None:
            self._www.__exit__(None, None, None)
            self._www = None

    @property
    def model_updates(self) -> dict[str, Any]:
        """The devices' local ``model_updates`` section: the file server's prefix only; short
        sampling, test run and watch (the clip is short)."""
        return {
            "allowed_urls": [self._server.base],
            "sample_every_s": 0.25,
            "test_frames": 4,
            "watch_frames": 10,
        }

    def on_phase(self, phase: str, fleet: Fleet) -> None:
        if phase == "connect":
            broker = fleet.broker
            assert broker is not None  # the setup phase started it
            self._jobs = JobsService(broker.host, broker.port, client_id="fleet-jobs").__enter__()
            self._jobs.add_group(GROUP, fleet.plan.things)
        elif phase == "run":
            devices = _replay_devices(fleet)
            try:
                self._scenario(fleet, devices)
            except Exception as exc:
                self.report.problems.append(f"the rollout stopped: {exc}")
            finally:
                for device in devices:
                    device.end_capture()
        elif phase == "report" and self.report.devices:
            for device, row in zip(_replay_devices(fleet), self.report.devices, strict=True):
                row.lost_frames = device.lost_frames()
                if row.lost_frames:
                    self.report.problems.append(f"{row.thing}: {row.lost_frames} frames lost")

    # -- the scenario ------------------------------------------------------------------------

    @property
    def _server(self) -> FileServer:
        if self._www is None:
            raise RuntimeError("use the Rollout as a context manager")
        return self._www

    @property
    def _service(self) -> JobsService:
        if self._jobs is None:
            raise RuntimeError("the Jobs service starts in the connect phase")
        return self._jobs

    def _scenario(self, fleet: Fleet, devices: list[ReplayDevice]) -> None:
        report, timeout = self.report, self.plan.timeout_s
        report.devices = [DeviceRollout(d.thing, canary=i == 0) for i, d in enumerate(devices)]
        if not _poll(lambda: all(_processed(d) >= _WARM_FRAMES for d in devices), timeout):
            report.problems.append(f"devices did not process {_WARM_FRAMES} frames in time")
            return
        for device, row in zip(devices, report.devices, strict=True):
            row.model_before = _ref(device)
        running = devices[0].app.runtime.detector.model
        good, bad = self._offers(running.name)
        report.new_model = good.ref
        self._bad_job(devices, bad)
        self._good_job(fleet, devices, good)

    def _offers(self, name: str) -> tuple[ModelOffer, ModelOffer]:
        plan = self.plan
        if plan.new_model is None:
            catalog = load_manifest()
            labels: Path | None = catalog.labels_path(catalog.default_spec())
            good = self._offer(self._model, f"{name}-2.tflite", name, "2", labels)
        else:
            named = re.sub(r"[^A-Za-z0-9_.-]", "-", plan.new_model.stem)[:64] or "fleet-new"
            good = self._offer(plan.new_model, "new.tflite", named, "1", plan.new_labels)
        bad_path = plan.bad_model or corrupt_copy(self._model, self._folder / "corrupt.tflite")
        bad = self._offer(bad_path, "bad.tflite", good.name, "bad", None)
        return good, bad

    def _offer(
        self, source: Path, file: str, name: str, version: str, labels: Path | None
    ) -> ModelOffer:
        model = self._publish(source, file)
        label_offer = self._publish(labels, file + ".labels.txt") if labels else None
        return ModelOffer(**model.model_dump(), name=name, version=version, labels=label_offer)

    def _publish(self, source: Path, name: str) -> FileOffer:
        target = self._folder / name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        size = target.stat().st_size
        return FileOffer(url=self._server.url(name), sha256=sha256_file(target), size=size)

    def _bad_job(self, devices: list[ReplayDevice], offer: ModelOffer) -> None:
        jobs, report, timeout = self._service, self.report, self.plan.timeout_s
        job_id = f"bad-model-{self._suffix}"
        self._say(f"rollout: job {job_id} ({offer.ref}, a bad model) to group {GROUP}, canary 1")
        started = time.monotonic()
        jobs.create_job(
            job_id,
            {"operation": "model-update", "model": offer.model_dump(mode="json")},
            groups=[GROUP],
            rollout=CANARY_ROLLOUT,
            abort=[ABORT_RULE],
        )
        canary = devices[0].thing
        ended = jobs.wait_until(
            lambda: (
                jobs.job_status(job_id) != "IN_PROGRESS" and jobs.status(job_id, canary) in TERMINAL
            ),
            timeout,
        )
        described = jobs.describe_job(job_id)
        report.bad_job = {
            "job_id": job_id,
            "model": offer.ref,
            "status": described["status"],
            "reason": described["reasonCode"],
            "canceled_s": round(time.monotonic() - started, 2) if ended else None,
        }
        executions = jobs.executions(job_id)
        for device, row in zip(devices, report.devices, strict=True):
            ex = executions.get(device.thing)
            row.bad_status = None if ex is None else ex["status"]
            row.bad_reason = "" if ex is None else ex["statusDetails"].get("reason", "")
            now = _ref(device)
            if now != row.model_before:
                report.problems.append(f"{device.thing}: the bad model job changed its model")
            if row.canary and (row.bad_status != "FAILED" or not row.bad_reason):
                report.problems.append(f"canary {device.thing}: {row.bad_status}, not FAILED")
            if not row.canary and row.bad_status not in (None, "CANCELED"):
                report.problems.append(f"{device.thing} ran the bad job: {row.bad_status}")
        if described["status"] != "CANCELED":
            report.problems.append(f"bad model job {described['status']}, not CANCELED")
        self._say(f"rollout: {job_id} {described['status']} ({described['reasonCode'] or '-'})")

    def _good_job(self, fleet: Fleet, devices: list[ReplayDevice], offer: ModelOffer) -> None:
        jobs, report, timeout = self._service, self.report, self.plan.timeout_s
        job_id = f"new-model-{self._suffix}"
        self._say(f"rollout: job {job_id} ({offer.ref}) to group {GROUP}")
        rows = {row.thing: row for row in report.devices}
        started = time.monotonic()

        def settled() -> bool:  # called by the service after every change, under its lock
            done = True
            for thing, row in rows.items():
                status = jobs.status(job_id, thing)
                if status == "SUCCEEDED" and row.succeeded_s is None:
                    row.succeeded_s = round(time.monotonic() - started, 2)
                done = done and status in TERMINAL
            return done

        jobs.create_job(
            job_id,
            {"operation": "model-update", "model": offer.model_dump(mode="json")},
            groups=[GROUP],
        )
        finished = jobs.wait_until(settled, timeout)
        elapsed = time.monotonic() - started
        executions = jobs.executions(job_id)
        seqs: dict[str, int] = {}
        for device in devices:
            row = rows[device.thing]
            ex = executions.get(device.thing, {})
            row.status = ex.get("status")
            row.reason = ex.get("statusDetails", {}).get("reason", "")
            row.model_after = _ref(device)
            row.status_model = _status_model(device)
            row.agreement, row.stages_s = _update_figures(device)
            seqs[device.thing] = device.app.stats().last_seq
            if row.status != "SUCCEEDED":
                why = f": {row.reason}" if row.reason else ""
                report.problems.append(f"{device.thing}: new model job {row.status}{why}")
            if offer.ref not in (row.model_after, row.status_model):
                report.problems.append(f"{device.thing} runs {row.model_after}, not {offer.ref}")
        all_ok = finished and all(r.status == "SUCCEEDED" for r in rows.values())
        report.good_job = {
            "job_id": job_id,
            "model": offer.ref,
            "status": jobs.job_status(job_id),
            "all_succeeded_s": round(elapsed, 2) if all_ok else None,
        }
        self._say(f"rollout: {job_id} {report.good_job['status']} in {elapsed:.1f} s")
        # The events each device raises from here on were detected by the new model.
        ledger = fleet.ledger
        _poll(lambda: all(ledger.models_after(t, q) for t, q in seqs.items()), timeout)
        for thing, seq in seqs.items():
            models = ledger.models_after(thing, seq)
            row = rows[thing]
            row.new_events = len(models)
            row.events_on_new = bool(models) and all(m == offer.ref for m in models)
            if not row.events_on_new:
                named = sorted(set(models)) or "no event"
                report.problems.append(f"{thing}: new events name {named}, not {offer.ref}")


def _replay_devices(fleet: Fleet) -> list[ReplayDevice]:
    from simulator.fleetreplay import ReplayDevice  # noqa: PLC0415 - the daemon, OpenCV

    devices = [d for d in fleet.devices if isinstance(d, ReplayDevice)]
    if len(devices) != len(fleet.devices):
        raise ValueError("a rollout needs replay devices (--replay CLIP)")
    return devices


def _processed(device: ReplayDevice) -> int:
    return sum(c.processed for c in device.app.camera_stats().values())


def _ref(device: ReplayDevice) -> str:
    model = device.app.runtime.detector.model
    return model.name if model.version is None else f"{model.name}@{model.version}"


def _update_figures(device: ReplayDevice) -> tuple[float | None, dict[str, float]]:
    """The agreement and stage timings of the device updater's last offer."""
    last = getattr(device.app.model_updates, "last", None)
    if not isinstance(last, UpdateRecord):
        return None, {}
    keys = ("download_s", "test_run_s", "switch_s", "watch_s")
    figures = last.result.figures
    agreement = last.result.agreement
    stages = {k: round(float(figures[k]), 3) for k in keys if k in figures}
    return (None if agreement is None else round(agreement, 3)), stages


def _status_model(device: ReplayDevice) -> str:
    """The model the device's own ``/status`` names (its health endpoint)."""
    telemetry = device.app.telemetry
    if telemetry is None or telemetry.server is None:
        return ""
    url = f"http://127.0.0.1:{telemetry.server.port}/status"
    with urllib.request.urlopen(url, timeout=5) as response:
        model = json.loads(response.read())["model"]
    version = model.get("version")
    return f"{model['name']}@{version}" if version else str(model["name"])


def _poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (the daemon's counters have no
    condition to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True
