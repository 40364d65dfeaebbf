"""``provision``: from an AWS account to a device that can connect, with least privilege.

Steps, each recorded in ``provision.json`` as soon as it changed something (``record``):

1. the private key: made here (EC P-256, 0600) or, on a re-run, the one already in the folder;
2. the thing: created, or an existing one used;
3. the certificate: AWS IoT signs a CSR of that key (``create_certificate_from_csr``), so the
   key never leaves the device; the answer is checked to be for this key;
4. the policy (``edge_app.aws.policy``): created, or an existing one used if its document is
   exactly the one this version writes (anything else is refused, never widened);
5. policy -> certificate, certificate -> thing; the thing into ``group`` (created if missing);
6. the ``iot:Data-ATS`` endpoint; the Amazon Root CA 1, the certificate and (if absent) a
   starting ``edge-app.yaml`` are written, all 0600, in a 0700 folder.

Re-running with the same arguments changes nothing and creates nothing. ``teardown``
(``edge_app.aws.teardown``) removes what the record says was created.
"""

from __future__ import annotations

__all__ = ["ProvisionReport", "Step", "load_or_make_key", "provision"]

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_app.aws.credentials import (
    certificate_facts,
    csr_pem,
    load_private_key,
    new_private_key,
    public_key_pem,
    write_amazon_root_ca1,
)
from edge_app.aws.deviceconfig import render_device_config
from edge_app.aws.iot import IotCalls
from edge_app.aws.policy import DEFAULT_POLICY_NAME, device_policy
from edge_app.aws.record import (
    CA_FILE,
    CERT_FILE,
    CONFIG_FILE,
    KEY_FILE,
    ProvisionRecord,
    load_record,
    save_record,
)
from edge_app.config.base import THING_NAME
from edge_app.errors import ProvisionError
from edge_app.files import private_dir, write_atomic

_GROUP_NAME = r"^[A-Za-z0-9:_-]{1,128}$"
_POLICY_NAME = r"^[\w+=,.@-]{1,128}$"


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a report: ``kind`` (thing, certificate, ...), its ``name``, what happened."""

    kind: str
    name: str
    outcome: str


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What ``provision`` did: the final record, the steps, the config file, the time taken."""

    record: ProvisionRecord
    steps: tuple[Step, ...]
    config: Path
    seconds: float


def provision(
    iot: IotCalls,
    folder: Path,
    thing: str,
    *,
    group: str | None = None,
    policy: str = DEFAULT_POLICY_NAME,
    clock: Callable[[], float] = time.monotonic,
) -> ProvisionReport:
    """Provision ``thing`` with ``iot`` and write its files to ``folder`` (created 0700).

    Raises ``ProvisionError`` for bad names, a folder that belongs to another thing, files it
    cannot use and every refusal by AWS; what was created until then stays in the record, so a
    re-run continues and ``teardown`` removes it.
    """
    started = clock()
    _check_name("thing name", thing, THING_NAME, "1-128 of A-Z a-z 0-9 _ : -")
    if group is not None:
        _check_name("thing group name", group, _GROUP_NAME, "1-128 of A-Z a-z 0-9 _ : -")
    _check_name("policy name", policy, _POLICY_NAME, "1-128 of A-Z a-z 0-9 _ + = , . @ -")
    try:
        private_dir(folder)
    except OSError as exc:
        raise ProvisionError(f"cannot create the folder {folder}: {exc.strerror}") from exc
    record = _starting_record(folder, thing, iot.region, policy, group)
    run = _Run(iot, folder, record)
    key = run.key()
    account = run.thing()
    run.certificate(key)
    run.policy(account)
    run.attach()
    run.group()
    run.endpoint()
    config = run.files()
    return ProvisionReport(run.record, tuple(run.steps), config, clock() - started)


def load_or_make_key(folder: Path) -> tuple[Any, bool]:
    """The device key in ``folder`` (a private ``KEY_FILE``), made now if there is none;
    and whether it was made now. Raises ``ProvisionError``."""
    path = folder / KEY_FILE
    if path.exists() or path.is_symlink():
        return load_private_key(path), False
    return new_private_key(path), True


def _check_name(what: str, value: str, pattern: str, allowed: str) -> None:
    if not re.match(pattern, value):
        raise ProvisionError(f"invalid {what} {value!r}: use {allowed}")


def _starting_record(
    folder: Path, thing: str, region: str, policy: str, group: str | None
) -> ProvisionRecord:
    record = load_record(folder)
    if record is None:
        return ProvisionRecord(thing=thing, region=region, policy=policy, group=group)
    if record.thing != thing:
        raise ProvisionError(
            f"{folder} holds the files of thing {record.thing!r}: give another --out for {thing!r}"
        )
    if record.region != region:
        raise ProvisionError(
            f"{thing!r} was provisioned in {record.region} (see {folder}/provision.json): pass "
            f"--region {record.region}, or --teardown there first"
        )
    if record.policy != policy:
        raise ProvisionError(
            f"{thing!r} was provisioned with policy {record.policy!r}: pass --policy "
            f"{record.policy}, or --teardown first"
        )
    if record.group is not None and group != record.group:
        raise ProvisionError(
            f"{thing!r} was put in thing group {record.group!r}: pass --group {record.group}, "
            "or --teardown first"
        )
    return replace(record, group=group)


class _Run:
    """One provisioning run: the IoT calls, the folder and the record it keeps up to date."""

    def __init__(self, iot: IotCalls, folder: Path, record: ProvisionRecord) -> None:
        self.iot = iot
        self.folder = folder
        self.record = record
        self.steps: list[Step] = []
        save_record(folder, record)

    def _save(self, made: str | None = None, **changes: Any) -> None:
        if made is not None:
            changes["created"] = {**self.record.created, made: True}
        self.record = replace(self.record, **changes)
        save_record(self.folder, self.record)

    def _step(self, kind: str, name: str, outcome: str) -> None:
        self.steps.append(Step(kind, name, outcome))

    def key(self) -> Any:
        key, made = load_or_make_key(self.folder)
        outcome = "made on this device (EC P-256, 0600)" if made else "reused (made here earlier)"
        self._step("private key", str(self.folder / KEY_FILE), outcome)
        return key

    def thing(self) -> tuple[str, str, str]:
        """Create or find the thing; its ARN's partition, region and account."""
        name = self.record.thing
        found = self.iot.find("describe_thing", thingName=name)
        if found is None:
            found = self.iot.call("create_thing", thingName=name)
            self._save("thing")
            self._step("thing", name, "created")
        else:
            self._step(
                "thing",
                name,
                "exists: used"
                + ("" if self.record.made("thing") else " (not removed by --teardown)"),
            )
        parts = str(found["thingArn"]).split(":")
        return parts[1], parts[3], parts[4]

    def certificate(self, key: Any) -> None:
        ours = public_key_pem(key)
        if self.record.certificate_id is not None and self._reuse_certificate(ours):
            return
        response = self.iot.call(
            "create_certificate_from_csr",
            certificateSigningRequest=csr_pem(key, self.record.thing),
            setAsActive=True,
        )
        self._save(
            "certificate",
            certificate_arn=response["certificateArn"],
            certificate_id=response["certificateId"],
        )
        pem = str(response["certificatePem"]).encode()
        if certificate_facts(pem, "the certificate AWS IoT returned").public_key_pem != ours:
            raise ProvisionError(
                f"AWS IoT returned certificate {response['certificateId']} for another key than "
                f"this device's {KEY_FILE}: it is recorded; run --teardown to remove it, then "
                "provision again"
            )
        self._write(CERT_FILE, pem)
        self._step("certificate", response["certificateId"], "created from this device's CSR")

    def _reuse_certificate(self, ours: bytes) -> bool:
        cert_id = self.record.certificate_id
        found = self.iot.find("describe_certificate", certificateId=cert_id)
        if found is None:
            # Deleted by someone else: forget it and sign a new one.
            created = {k: v for k, v in self.record.created.items() if k != "certificate"}
            self._save(certificate_arn=None, certificate_id=None, created=created)
            return False
        description = found["certificateDescription"]
        pem = str(description["certificatePem"]).encode()
        if certificate_facts(pem, f"certificate {cert_id}").public_key_pem != ours:
            raise ProvisionError(
                f"certificate {cert_id} (in provision.json) is not for this folder's {KEY_FILE}: "
                "the key was replaced; run --teardown, then provision again"
            )
        status = description["status"]
        if status != "ACTIVE":
            raise ProvisionError(
                f"certificate {cert_id} is {status}: activate it (aws iot update-certificate "
                f"--certificate-id {cert_id} --new-status ACTIVE), or run --teardown and "
                "provision again"
            )
        self._write(CERT_FILE, pem)
        self._step("certificate", str(cert_id), "exists and matches the key: used")
        return True

    def policy(self, account: tuple[str, str, str]) -> None:
        name = self.record.policy
        document = device_policy(*account)
        found = self.iot.find("get_policy", policyName=name)
        if found is None:
            self.iot.call("create_policy", policyName=name, policyDocument=json.dumps(document))
            self._save("policy")
            self._step("policy", name, "created (least privilege, policy variables)")
            return
        existing = found["policyDocument"]
        if (json.loads(existing) if isinstance(existing, str) else existing) != document:
            raise ProvisionError(
                f"a policy named {name!r} exists with another document than the least-privilege "
                "one this version writes; it is left as it is. Give another --policy NAME, or "
                "make ours its default version: edge-app aws policy --account ... > p.json; "
                f"aws iot create-policy-version --policy-name {name} --set-as-default "
                "--policy-document file://p.json"
            )
        self._step("policy", name, "exists with the same document: used")

    def attach(self) -> None:
        arn = self.record.certificate_arn
        self.iot.call("attach_policy", policyName=self.record.policy, target=arn)
        self.iot.call("attach_thing_principal", thingName=self.record.thing, principal=arn)
        self._step("attachments", self.record.thing, "policy -> certificate -> thing")

    def group(self) -> None:
        group, thing = self.record.group, self.record.thing
        if group is None:
            return
        if self.iot.find("describe_thing_group", thingGroupName=group) is None:
            self.iot.call("create_thing_group", thingGroupName=group)
            self._save("group")
            self._step("thing group", group, "created")
        groups = self.iot.call("list_thing_groups_for_thing", thingName=thing, maxResults=250)
        if group in {g["groupName"] for g in groups.get("thingGroups", [])}:
            self._step("group membership", f"{thing} in {group}", "already a member")
            return
        self.iot.call("add_thing_to_thing_group", thingGroupName=group, thingName=thing)
        self._save("membership")
        self._step("group membership", f"{thing} in {group}", "added")

    def endpoint(self) -> None:
        response = self.iot.call("describe_endpoint", endpointType="iot:Data-ATS")
        self._save(endpoint=str(response["endpointAddress"]))
        self._step("endpoint", str(self.record.endpoint), "iot:Data-ATS")

    def files(self) -> Path:
        write_amazon_root_ca1(self.folder / CA_FILE)
        config = self.folder / CONFIG_FILE
        if config.exists():
            self._step("config", str(config), "exists: kept as it is")
            return config
        text = render_device_config(
            self.folder,
            CONFIG_FILE,
            thing=self.record.thing,
            endpoint=str(self.record.endpoint),
            region=self.record.region,
        )
        self._write(CONFIG_FILE, text.encode())
        self._step("config", str(config), "written (replace the placeholder camera)")
        return config

    def _write(self, name: str, data: bytes) -> None:
        try:
            write_atomic(self.folder / name, data)
        except OSError as exc:
            raise ProvisionError(f"cannot write {self.folder / name}: {exc.strerror}") from exc
