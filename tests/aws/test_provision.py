"""``provision`` and ``teardown`` with real boto3 against moto's server: what is created, that a
re-run creates nothing, that a teardown removes exactly what was created, and that failures
leave a record that a re-run or a teardown can finish."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from edge_app.aws import IotCalls, load_record, provision, teardown
from edge_app.aws.credentials import AMAZON_ROOT_CA1_SHA256
from edge_app.config import load_config
from edge_app.errors import ProvisionError

FILES = (
    "private.pem.key",
    "device.pem.crt",
    "AmazonRootCA1.pem",
    "edge-app.yaml",
    "provision.json",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def certificates(iot: IotCalls) -> set[str]:
    return {c["certificateId"] for c in iot.call("list_certificates")["certificates"]}


def things(iot: IotCalls) -> set[str]:
    return {t["thingName"] for t in iot.call("list_things")["things"]}


def test_provision_creates_a_connectable_device_and_its_files(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    out = tmp_path / "dev"
    report = provision(iot, out, thing_name, group=f"g-{thing_name}", policy=f"p-{thing_name}")

    record = report.record
    assert record.created == dict.fromkeys(
        ("thing", "certificate", "policy", "group", "membership"), True
    )
    cert = iot.call("describe_certificate", certificateId=record.certificate_id)
    assert cert["certificateDescription"]["status"] == "ACTIVE"
    arn = record.certificate_arn
    assert iot.call("list_principal_things", principal=arn)["things"] == [thing_name]
    policies = iot.call("list_attached_policies", target=arn)["policies"]
    assert [p["policyName"] for p in policies] == [f"p-{thing_name}"]
    members = iot.call("list_things_in_thing_group", thingGroupName=f"g-{thing_name}")
    assert members["things"] == [thing_name]

    # files: all 0600 in a 0700 folder; the key is ours and the certificate is for it
    assert mode(out) == 0o700
    assert {p.name for p in out.iterdir()} == set(FILES)
    assert {name: mode(out / name) for name in FILES} == dict.fromkeys(FILES, 0o600)
    key = serialization.load_pem_private_key((out / "private.pem.key").read_bytes(), None)
    certificate = x509.load_pem_x509_certificate((out / "device.pem.crt").read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    assert certificate.public_key().public_bytes(pem, spki) == key.public_key().public_bytes(
        pem, spki
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == record.certificate_id
    root = x509.load_pem_x509_certificate((out / "AmazonRootCA1.pem").read_bytes())
    assert root.fingerprint(hashes.SHA256()).hex() == AMAZON_ROOT_CA1_SHA256
    assert root.subject.rfc4514_string() == "CN=Amazon Root CA 1,O=Amazon,C=US"

    config = load_config(report.config)
    assert config.device.thing_name == thing_name
    assert config.uplink.host == record.endpoint
    assert record.endpoint is not None
    assert record.endpoint.endswith("-ats.iot.us-east-1.amazonaws.com")
    assert config.uplink.tls is not None
    assert (config.uplink.tls.ca, config.uplink.tls.cert, config.uplink.tls.key) == (
        out / "AmazonRootCA1.pem",
        out / "device.pem.crt",
        out / "private.pem.key",
    )
    assert config.uplink.client_id is None  # the thing name, as the policy wants
    assert config.aws.region == "us-east-1"


def test_the_private_key_never_leaves_the_device(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    sent: list[dict[str, Any]] = []
    client = iot.client
    original = client.create_certificate_from_csr

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(client, name)

        def create_certificate_from_csr(self, **params: Any) -> Any:
            sent.append(params)
            return original(**params)

    provision(IotCalls(Recording()), tmp_path / "dev", thing_name)
    key_pem = (tmp_path / "dev" / "private.pem.key").read_bytes()
    body = sent[0]["certificateSigningRequest"]
    assert "PRIVATE KEY" not in body
    assert key_pem.split(b"\n")[1].decode() not in body
    assert x509.load_pem_x509_csr(body.encode()).is_signature_valid


def test_running_provision_again_changes_nothing(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    out = tmp_path / "dev"
    first = provision(iot, out, thing_name, group=f"g-{thing_name}")
    before = {name: (out / name).read_bytes() for name in FILES if name != "provision.json"}
    certs, known = certificates(iot), things(iot)

    again = provision(iot, out, thing_name, group=f"g-{thing_name}")

    assert certificates(iot) == certs
    assert things(iot) == known
    assert again.record.certificate_id == first.record.certificate_id
    assert again.record.created == first.record.created
    after = {name: (out / name).read_bytes() for name in before}
    assert after == before
    assert not any(s.outcome.startswith(("created", "made", "added")) for s in again.steps)


def test_teardown_removes_exactly_what_provision_created(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    # Made by someone else before: a thing group; and another device shares the policy.
    group, policy = f"g-{thing_name}", f"p-{thing_name}"
    iot.call("create_thing_group", thingGroupName=group)
    out, other = tmp_path / "dev", tmp_path / "other"
    created = provision(iot, out, thing_name, group=group, policy=policy)
    assert created.record.created == {
        "thing": True,
        "certificate": True,
        "policy": True,
        "membership": True,
    }
    provision(iot, other, f"{thing_name}-2", policy=policy)
    certs = certificates(iot)

    done = teardown(iot, out, thing=thing_name)

    assert certificates(iot) == certs - {created.record.certificate_id}
    assert thing_name not in things(iot)
    assert f"{thing_name}-2" in things(iot)
    assert iot.find("describe_thing_group", thingGroupName=group) is not None  # not ours
    assert iot.call("list_things_in_thing_group", thingGroupName=group)["things"] == []
    assert iot.find("get_policy", policyName=policy) is not None  # still used by the other
    outcomes = {s.kind: s.outcome for s in done.steps}
    assert outcomes["policy"] == "kept: still attached to other certificates"
    # the credentials go; the config (and any data) stays
    assert sorted(p.name for p in out.iterdir()) == ["edge-app.yaml"]

    # The other device, torn down last, did not create the policy: it stays, said so by
    # omission; its own certificate and thing go.
    teardown(iot, other)
    assert f"{thing_name}-2" not in things(iot)
    assert iot.find("get_policy", policyName=policy) is not None


def test_teardown_of_the_policy_owner_removes_the_policy_once_unused(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    policy = f"p-{thing_name}"
    provision(iot, tmp_path / "dev", thing_name, policy=policy)
    teardown(iot, tmp_path / "dev")
    assert iot.find("get_policy", policyName=policy) is None
    assert thing_name not in things(iot)


def test_an_existing_thing_is_used_and_kept(tmp_path: Path, iot: IotCalls, thing_name: str) -> None:
    iot.call("create_thing", thingName=thing_name)
    report = provision(iot, tmp_path / "dev", thing_name)
    assert "thing" not in report.record.created
    teardown(iot, tmp_path / "dev")
    assert thing_name in things(iot)
    assert iot.call("list_thing_principals", thingName=thing_name)["principals"] == []


def test_a_wider_policy_of_the_same_name_is_refused_and_the_run_can_be_undone(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    wide = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
    }
    name = f"wide-{thing_name}"
    iot.call("create_policy", policyName=name, policyDocument=json.dumps(wide))
    out = tmp_path / "dev"
    with pytest.raises(ProvisionError, match="exists with another document") as caught:
        provision(iot, out, thing_name, policy=name)
    assert "create-policy-version" in str(caught.value)
    record = load_record(out)
    assert record is not None
    assert record.created == {"thing": True, "certificate": True}
    arn = record.certificate_arn
    assert iot.call("list_attached_policies", target=arn)["policies"] == []  # never attached

    teardown(iot, out)
    assert thing_name not in things(iot)
    assert record.certificate_id not in certificates(iot)
    stored = json.loads(iot.call("get_policy", policyName=name)["policyDocument"])
    assert stored == wide  # left exactly as it was


def test_a_certificate_for_another_key_is_refused_and_recorded(
    tmp_path: Path, iot_raw: Any, thing_name: str
) -> None:
    # moto's own CSR signing certifies a random key, not the CSR's: exactly the answer that
    # must never be accepted as this device's certificate.
    iot = IotCalls(iot_raw)
    out = tmp_path / "dev"
    with pytest.raises(ProvisionError, match="for another key than this device's"):
        provision(iot, out, thing_name)
    assert not (out / "device.pem.crt").exists()
    record = load_record(out)
    assert record is not None
    assert record.made("certificate")
    teardown(iot, out)
    assert record.certificate_id not in certificates(iot)
    assert thing_name not in things(iot)


@pytest.mark.parametrize(
    ("thing", "group", "policy", "message"),
    [
        ("cam/1", None, "edge-app-device", "invalid thing name 'cam/1'"),
        ("", None, "edge-app-device", "invalid thing name ''"),
        ("cam-1", "g 1", "edge-app-device", "invalid thing group name 'g 1'"),
        ("cam-1", None, "p*", "invalid policy name 'p*'"),
    ],
)
def test_bad_names_are_refused_before_anything_is_created(
    tmp_path: Path,
    iot: IotCalls,
    thing: str,
    group: str | None,
    policy: str,
    message: str,
) -> None:
    known = things(iot)
    with pytest.raises(ProvisionError, match=message.replace("*", r"\*")):
        provision(iot, tmp_path / "dev", thing, group=group, policy=policy)
    assert things(iot) == known
    assert not (tmp_path / "dev").exists()


def test_a_folder_of_another_thing_is_refused(
    tmp_path: Path, iot: IotCalls, thing_name: str
) -> None:
    provision(iot, tmp_path / "dev", thing_name)
    with pytest.raises(ProvisionError, match=f"holds the files of thing '{thing_name}'"):
        provision(iot, tmp_path / "dev", f"{thing_name}-x")
    with pytest.raises(ProvisionError, match=f"holds thing '{thing_name}', not 'zz'"):
        teardown(iot, tmp_path / "dev", thing="zz")


def test_a_key_others_may_read_is_refused(tmp_path: Path, iot: IotCalls, thing_name: str) -> None:
    out = tmp_path / "dev"
    provision(iot, out, thing_name)
    os.chmod(out / "private.pem.key", 0o644)
    with pytest.raises(ProvisionError, match=r"may be read by group or others .*chmod 600"):
        provision(iot, out, thing_name)


def test_a_damaged_record_is_refused_with_what_to_do(tmp_path: Path, iot: IotCalls) -> None:
    out = tmp_path / "dev"
    out.mkdir()
    (out / "provision.json").write_text('{"schema": "edge-app/provision/1", "thing": 3}')
    with pytest.raises(ProvisionError, match=r"is damaged .*remove the resources it lists by hand"):
        teardown(iot, out)


def test_teardown_without_a_record_removes_nothing(tmp_path: Path, iot: IotCalls) -> None:
    with pytest.raises(ProvisionError, match="nothing to tear down"):
        teardown(iot, tmp_path)
