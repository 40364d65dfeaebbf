"""``teardown``: remove exactly what ``provision`` created, as its record lists it.

The certificate is detached (from every policy and thing: it is ours alone), deactivated and
deleted; the group membership, the group, the thing and the policy are removed only if this
tool created them, and a group, thing or policy still in use by others (another thing in the
group, another certificate on the thing or on the policy) is kept and said so. Each removal
is recorded at once, so an interrupted teardown continues where it stopped. Then the device's
credential files (key, certificate, CA) and the record go; the config file and the data
folder (undelivered events, snapshots) stay.

AWS applies detachments asynchronously ("may take several seconds to propagate"): a delete
refused with a conflict right after a detach is retried for up to ``conflict_wait_s``.
"""

from __future__ import annotations

__all__ = ["TeardownReport", "teardown"]

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from edge_app.aws.iot import IotCalls
from edge_app.aws.provision import Step
from edge_app.aws.record import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    RECORD_FILE,
    ProvisionRecord,
    load_record,
    save_record,
)
from edge_app.errors import ProvisionError

_CONFLICTS = {"DeleteConflictException", "InvalidRequestException", "ThingStillAttached"}
_RETRY_S = 1.0


@dataclass(frozen=True, slots=True)
class TeardownReport:
    """What ``teardown`` did: one step per resource, and the time taken in seconds."""

    thing: str
    steps: tuple[Step, ...]
    seconds: float


def teardown(
    iot: IotCalls,
    folder: Path,
    *,
    thing: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    conflict_wait_s: float = 30.0,
) -> TeardownReport:
    """Remove what ``folder/provision.json`` says was created. ``ProvisionError`` when there
    is no record, it is for another ``thing`` (if given) or region, or AWS refuses a call
    (re-running continues)."""
    started = clock()
    record = load_record(folder)
    if record is None:
        raise ProvisionError(
            f"no {RECORD_FILE} in {folder}: nothing to tear down (--teardown removes only what "
            "provision recorded there)"
        )
    if thing is not None and record.thing != thing:
        raise ProvisionError(f"{folder} holds thing {record.thing!r}, not {thing!r}: check --out")
    if record.region != iot.region:
        raise ProvisionError(
            f"{record.thing!r} was provisioned in {record.region}: pass --region {record.region}"
        )
    run = _Teardown(iot, folder, record, clock=clock, sleep=sleep, wait_s=conflict_wait_s)
    run.cloud()
    run.files()
    return TeardownReport(record.thing, tuple(run.steps), clock() - started)


class _Teardown:
    def __init__(
        self,
        iot: IotCalls,
        folder: Path,
        record: ProvisionRecord,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        wait_s: float,
    ) -> None:
        self.iot, self.folder, self.record = iot, folder, record
        self._clock, self._sleep, self._wait_s = clock, sleep, wait_s
        self.steps: list[Step] = []

    def cloud(self) -> None:
        record, iot = self.record, self.iot
        # Detaching is asynchronous: until it propagates our certificate may still be listed
        # on the thing and the policy, and must not count as someone else's.
        thing, group, ours = record.thing, record.group, record.certificate_arn
        if record.made("certificate") and record.certificate_id is not None:
            self.steps.append(self._remove_certificate(record.certificate_id))
            self._forget("certificate", certificate_arn=None, certificate_id=None)
        if record.made("membership") and group is not None:
            iot.call("remove_thing_from_thing_group", thingGroupName=group, thingName=thing)
            self.steps.append(Step("group membership", f"{thing} in {group}", "removed"))
            self._forget("membership")
        if record.made("group") and group is not None:
            self.steps.append(_remove_group(iot, group))
            self._forget("group")
        if record.made("thing"):
            self.steps.append(self._remove_thing(thing, ours))
            self._forget("thing")
        if record.made("policy"):
            self.steps.append(_remove_policy(iot, record.policy, ours))
            self._forget("policy")

    def files(self) -> None:
        for name in (KEY_FILE, CERT_FILE, CA_FILE, RECORD_FILE):
            path = self.folder / name
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise ProvisionError(f"cannot remove {path}: {exc.strerror}") from exc
        self.steps.append(
            Step("files", str(self.folder), f"removed {KEY_FILE}, {CERT_FILE}, {CA_FILE}")
        )

    def _forget(self, kind: str, **changes: Any) -> None:
        created = {k: v for k, v in self.record.created.items() if k != kind}
        self.record = replace(self.record, created=created, **changes)
        save_record(self.folder, self.record)

    def _retrying(self, operation: str, **params: Any) -> None:
        """``operation``, again every second while AWS answers with a conflict (a detach
        that has not propagated yet), for up to ``conflict_wait_s``."""
        deadline = self._clock() + self._wait_s
        while True:
            try:
                self.iot.call(operation, **params)
                return
            except ProvisionError as exc:
                cause = exc.__cause__
                code = _code(cause) if isinstance(cause, ClientError) else None
                if code not in _CONFLICTS or self._clock() >= deadline:
                    raise
            self._sleep(_RETRY_S)

    def _remove_certificate(self, cert_id: str) -> Step:
        iot = self.iot
        found = iot.find("describe_certificate", certificateId=cert_id)
        if found is None:
            return Step("certificate", cert_id, "already gone")
        arn = found["certificateDescription"]["certificateArn"]
        policies = iot.call("list_attached_policies", target=arn, recursive=False)
        for policy in policies.get("policies", []):
            iot.call("detach_policy", policyName=policy["policyName"], target=arn)
        for thing in iot.call("list_principal_things", principal=arn).get("things", []):
            iot.call("detach_thing_principal", thingName=thing, principal=arn)
        iot.call("update_certificate", certificateId=cert_id, newStatus="INACTIVE")
        self._retrying("delete_certificate", certificateId=cert_id)
        return Step("certificate", cert_id, "detached, deactivated, deleted")

    def _remove_thing(self, thing: str, ours: str | None) -> Step:
        principals = self.iot.find("list_thing_principals", thingName=thing)
        if principals is None:
            return Step("thing", thing, "already gone")
        if set(principals.get("principals", [])) - {ours}:
            return Step("thing", thing, "kept: other certificates are attached to it")
        self._retrying("delete_thing", thingName=thing)
        return Step("thing", thing, "deleted")


def _code(exc: ClientError) -> str | None:
    code = exc.response.get("Error", {}).get("Code")
    return None if code is None else str(code)


def _remove_group(iot: IotCalls, group: str) -> Step:
    if iot.find("describe_thing_group", thingGroupName=group) is None:
        return Step("thing group", group, "already gone")
    members = iot.call("list_things_in_thing_group", thingGroupName=group, maxResults=1)
    if members.get("things"):
        return Step("thing group", group, "kept: other things are in it")
    iot.call("delete_thing_group", thingGroupName=group)
    return Step("thing group", group, "deleted")


def _remove_policy(iot: IotCalls, policy: str, ours: str | None) -> Step:
    if iot.find("get_policy", policyName=policy) is None:
        return Step("policy", policy, "already gone")
    targets = iot.call("list_targets_for_policy", policyName=policy, pageSize=2)
    if set(targets.get("targets", [])) - {ours}:
        return Step("policy", policy, "kept: still attached to other certificates")
    iot.call("delete_policy", policyName=policy)
    return Step("policy", policy, "deleted")
