"""Fleet rollouts with AWS IoT Jobs: create a job for a thing group, watch it, cancel it.

``job_request`` builds the ``create_job`` parameters (pure, so tests read them): the job
document the device agent runs (``edge_app.remote.jobdoc``), ``targetSelection`` SNAPSHOT,
``jobExecutionsRolloutConfig`` (a canary: ``exponentialRate`` starting at N devices a minute
and doubling each time N more succeeded; or a flat ``maximumPerMinute``), ``abortConfig``
(CANCEL once failed, rejected or timed-out executions reach P %, after at least K devices were
notified: AWS's ``minNumberOfExecutedThings``) and ``timeoutConfig``. ``create_rollout``,
``fleet_status`` and ``cancel_rollout`` make the calls through ``IotCalls`` (errors as one
``ProvisionError`` line).

The fleet view (``fleet_status``) is, per thing of the group, its execution of the job (status,
``statusDetails.reason`` and ``stage``) and what its ``edge-config`` shadow reports running:
model name/version/sha256 and config version.
"""

from __future__ import annotations

__all__ = [
    "ThingStatus",
    "cancel_rollout",
    "config_document",
    "create_rollout",
    "data_client",
    "default_ref",
    "fleet_status",
    "job_request",
    "model_document",
    "new_job_id",
]

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from edge_app.aws.iot import IotCalls, aws_client
from edge_app.config import RemoteOverlay
from edge_app.errors import ProvisionError
from edge_app.remote import SHADOW_NAME
from edge_app.remote.jobdoc import (
    MAX_DOCUMENT_BYTES,
    JobDocumentError,
    parse_job_document,
)

_JOB_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def model_document(
    file: Path, url: str, name: str, version: str, *, labels: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``model-update`` job document for ``file`` served at ``url`` (sha256 and size from
    the file). ``ProvisionError`` if the file cannot be read or the offer is invalid."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"cannot read the model file {file}: {exc.strerror}") from exc
    offer: dict[str, Any] = {
        "url": url,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "name": name,
        "version": version,
    }
    if labels is not None:
        offer["labels"] = labels
    return _checked({"operation": "model-update", "model": offer})


def default_ref(file: Path) -> tuple[str, str]:
    """(name, version) for a model file given without ``--ref``: its stem, sanitised, and the
    first 8 hex digits of its sha256."""
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    return _NAME.sub("_", file.stem)[:64] or "model", digest[:8]


def config_document(overlay: Any) -> dict[str, Any]:
    """The ``config`` job document for ``overlay`` (a remote overlay, checked for its shape
    here; the device checks it against its own file)."""
    if not isinstance(overlay, dict):
        raise ProvisionError("the config overlay must be a mapping (YAML keys at the top)")
    try:
        RemoteOverlay.model_validate(overlay)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<overlay>"
        raise ProvisionError(
            f"invalid config overlay: {where}: {first['msg']} ({exc.error_count()} error(s); "
            "see docs/remote-config.md for what a remote overlay may set)"
        ) from exc
    return _checked({"operation": "config", "desired": overlay})


def _checked(document: dict[str, Any]) -> dict[str, Any]:
    try:
        parse_job_document(document)
    except JobDocumentError as exc:
        raise ProvisionError(str(exc)) from exc
    return document


def job_request(
    job_id: str,
    group_arn: str,
    document: dict[str, Any],
    *,
    canary: int | None = None,
    max_per_minute: int | None = None,
    abort_percent: float | None = None,
    abort_min_executed: int = 1,
    timeout_minutes: int | None = None,
) -> dict[str, Any]:
    """The ``create_job`` parameters of a rollout of ``document`` to the group."""
    if not _JOB_ID.match(job_id):
        raise ProvisionError(f"invalid job id {job_id!r}: 1-64 of a-z A-Z 0-9 _ -")
    body = json.dumps(document, separators=(",", ":"))
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ProvisionError(f"the job document is {len(body)} bytes; AWS takes 32768 at most")
    request: dict[str, Any] = {
        "jobId": job_id,
        "targets": [group_arn],
        "document": body,
        "description": f"edge-app {document['operation']} rollout",
        "targetSelection": "SNAPSHOT",
    }
    rollout: dict[str, Any] = {}
    if max_per_minute is not None:
        rollout["maximumPerMinute"] = max_per_minute
    if canary is not None:
        rollout["exponentialRate"] = {
            "baseRatePerMinute": canary,
            "incrementFactor": 2.0,
            "rateIncreaseCriteria": {"numberOfSucceededThings": canary},
        }
    if rollout:
        request["jobExecutionsRolloutConfig"] = rollout
    if abort_percent is not None:
        request["abortConfig"] = {
            "criteriaList": [
                {
                    "failureType": "ALL",
                    "action": "CANCEL",
                    "thresholdPercentage": float(abort_percent),
                    "minNumberOfExecutedThings": abort_min_executed,
                }
            ]
        }
    if timeout_minutes is not None:
        request["timeoutConfig"] = {"inProgressTimeoutInMinutes": timeout_minutes}
    return request


def new_job_id(operation: str) -> str:
    """``edge-app-<operation>-<UTC time>``: unique per second, sortable."""
    return f"edge-app-{operation}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def create_rollout(iot: IotCalls, group: str, request: dict[str, Any]) -> dict[str, Any]:
    """Create the job of ``request`` (built by ``job_request`` with a placeholder target) for
    thing group ``group``; ``ProvisionError`` if the group does not exist."""
    found = iot.find("describe_thing_group", thingGroupName=group)
    if found is None:
        raise ProvisionError(
            f"thing group {group} not found: create it and add devices (edge-app aws provision "
            "--group GROUP, or aws iot create-thing-group)"
        )
    return iot.call("create_job", **{**request, "targets": [found["thingGroupArn"]]})


def cancel_rollout(iot: IotCalls, job_id: str, reason: str = "edge-app fleet cancel") -> None:
    """Cancel the job: QUEUED executions are canceled, running ones finish and report."""
    if iot.find("describe_job", jobId=job_id) is None:
        raise ProvisionError(f"job {job_id} not found: see `aws iot list-jobs`")
    iot.call("cancel_job", jobId=job_id, comment=reason[:2028])


@dataclass(frozen=True, slots=True)
class ThingStatus:
    """One row of the fleet view."""

    thing: str
    execution: str  # the job execution's status, "-" when the thing has none
    reason: str
    stage: str
    model: str  # NAME[@VERSION] (sha256 head) from the shadow's reported config, or "-"
    config_version: str


def fleet_status(iot: IotCalls, data: Any, group: str, job_id: str | None) -> list[ThingStatus]:
    """The fleet view of ``group`` (``data``: a boto3 ``iot-data`` client)."""
    if iot.find("describe_thing_group", thingGroupName=group) is None:
        raise ProvisionError(f"thing group {group} not found: see `aws iot list-thing-groups`")
    if job_id is not None and iot.find("describe_job", jobId=job_id) is None:
        raise ProvisionError(f"job {job_id} not found: see `aws iot list-jobs`")
    rows = []
    for thing in _things_of(iot, group):
        execution, reason, stage = "-", "", ""
        if job_id is not None:
            found = iot.find("describe_job_execution", jobId=job_id, thingName=thing)
            if found is not None:
                ex = found["execution"]
                details = ex.get("statusDetails", {}).get("detailsMap", {}) or {}
                execution = str(ex.get("status", "-"))
                reason, stage = details.get("reason", ""), details.get("stage", "")
        model, version = _reported(data, thing)
        rows.append(ThingStatus(thing, execution, reason, stage, model, version))
    return rows


def _things_of(iot: IotCalls, group: str) -> Iterator[str]:
    token: str | None = None
    while True:
        params: dict[str, Any] = {"thingGroupName": group}
        if token:
            params["nextToken"] = token
        page = iot.call("list_things_in_thing_group", **params)
        yield from page.get("things", [])
        token = page.get("nextToken")
        if not token:
            return


def _reported(data: Any, thing: str) -> tuple[str, str]:
    """(model, config version) from the thing's ``edge-config`` shadow; ("-", "-") if none."""
    try:
        answer = data.get_thing_shadow(thingName=thing, shadowName=SHADOW_NAME)
        doc = json.loads(answer["payload"].read())
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "?"))
        if code == "ResourceNotFoundException":
            return "-", "-"  # the device never reported
        raise ProvisionError(
            f"AWS IoT refused iot:GetThingShadow for {thing}: {code}; grant it on the things' "
            "edge-config shadows to see what each device runs"
        ) from exc
    except BotoCoreError as exc:
        raise ProvisionError(f"cannot read the shadow of {thing}: {exc}") from exc
    except ValueError:
        return "-", "-"
    config = doc.get("state", {}).get("reported", {}).get("config", {}) or {}
    model = config.get("model") or {}
    name = str(model.get("name", "-"))
    if model.get("version"):
        name += f"@{model['version']}"
    if model.get("sha256"):
        name += f" ({model['sha256']})"
    version = config.get("version")
    return name, "-" if version is None else str(version)


def data_client(
    iot: IotCalls, *, region: str | None, profile: str | None, endpoint_url: str | None
) -> Any:
    """A boto3 ``iot-data`` client for the shadows: at ``endpoint_url``, or at the account's
    ``iot:Data-ATS`` endpoint (``describe_endpoint``)."""
    if endpoint_url is None:
        host = iot.call("describe_endpoint", endpointType="iot:Data-ATS")["endpointAddress"]
        endpoint_url = f"https://{host}"
    return aws_client("iot-data", region or iot.region, profile=profile, endpoint_url=endpoint_url)
