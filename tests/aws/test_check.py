"""``edge-app aws check`` against a real Mosquitto enforcing the device policy (and moto for the
registry lookups): every step passes for a good device, and each classic mistake stops the walk
at the right step with the fix that names it."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.aws import Answer, CheckStep, IotCalls, fixes, provision, registry_check, run_check
from simulator.broker import Mosquitto, free_port
from simulator.certs import Pki, make_pki
from simulator.shadow import ShadowService

pytestmark = pytest.mark.broker

STEPS = ["config", "files", "endpoint", "tls", "mqtt", "publish", "shadow"]


@pytest.fixture
def shadow(policy_broker: Mosquitto) -> Iterator[ShadowService]:
    with ShadowService(policy_broker.host, policy_broker.port, client_id="check-shadow") as s:
        yield s


def write_config(folder: Path, thing: str, port: int, tls: dict[str, str], **uplink: Any) -> Path:
    """A device config for ``thing`` on 127.0.0.1:``port`` with the ``tls`` files."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "device": {"thing_name": thing, "data_dir": str(folder / "data")},
        "cameras": [{"name": "cam", "source": {"type": "usb"}}],
        "uplink": {"host": "127.0.0.1", "port": port, "tls": tls, **uplink},
    }
    path = folder / "edge-app.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def tls_of(pki: Pki) -> dict[str, str]:
    return {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}


def walk(path: Path, **kwargs: Any) -> dict[str, CheckStep]:
    return {step.name: step for step in run_check(path, timeout_s=3.0, **kwargs)}


def statuses(steps: dict[str, CheckStep]) -> list[tuple[str, str]]:
    return [(name, step.status) for name, step in steps.items()]


def stopped_at(steps: dict[str, CheckStep], failed: str) -> CheckStep:
    """The failed step, after asserting the walk passed before it and skipped after it."""
    names = list(steps)
    at = names.index(failed)
    assert [steps[n].status for n in names[:at]] == ["ok"] * at, statuses(steps)
    assert steps[failed].status == "fail", statuses(steps)
    assert all(steps[n].status == "skip" for n in names[at + 1 :]), statuses(steps)
    return steps[failed]


def test_a_good_device_passes_every_step(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki], shadow: ShadowService
) -> None:
    shadow.set_desired("thing-a", {"detector": {"score_threshold": 0.5}})
    path = write_config(tmp_path, "thing-a", policy_broker.tls_port, tls_of(fleet["thing-a"]))
    steps = walk(path)
    assert statuses(steps) == [(name, "ok") for name in STEPS]
    assert "client id thing-a" in steps["mqtt"].detail
    assert steps["shadow"].detail.startswith("edge-config shadow: version ")
    assert "the certificate matches the key" in steps["files"].detail


def test_a_new_device_without_a_shadow_passes(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki], shadow: ShadowService
) -> None:
    shadow.delete("thing-b")
    path = write_config(tmp_path, "thing-b", policy_broker.tls_port, tls_of(fleet["thing-b"]))
    steps = walk(path)
    assert steps["shadow"].status == "ok"
    assert "no edge-config shadow yet (404)" in steps["shadow"].detail


def test_wrong_ca_stops_at_tls(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    other = make_pki(tmp_path / "other-ca")
    tls = {**tls_of(fleet["thing-a"]), "ca": str(other.ca)}
    step = stopped_at(walk(write_config(tmp_path, "thing-a", policy_broker.tls_port, tls)), "tls")
    assert "self-signed certificate in certificate chain" in step.detail
    assert f"not signed by the CA in uplink.tls.ca ({other.ca})" in step.fix
    assert "Amazon Root CA 1" in step.fix


def test_a_certificate_with_another_key_stops_at_files(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    tls = {**tls_of(fleet["thing-a"]), "key": str(fleet["thing-b"].client_key)}
    step = stopped_at(walk(write_config(tmp_path, "thing-a", policy_broker.tls_port, tls)), "files")
    assert "cert/key mismatch" in step.detail
    assert "were not made together" in step.fix


def test_a_key_others_may_read_stops_at_files(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    key = tmp_path / "loose.key"
    shutil.copyfile(fleet["thing-a"].client_key, key)
    os.chmod(key, 0o640)
    tls = {**tls_of(fleet["thing-a"]), "key": str(key)}
    step = stopped_at(walk(write_config(tmp_path, "thing-a", policy_broker.tls_port, tls)), "files")
    assert f"chmod 600 {key}" in step.detail


def test_a_client_id_the_policy_refuses_stops_at_publish(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    path = write_config(
        tmp_path, "thing-a", policy_broker.tls_port, tls_of(fleet["thing-a"]), client_id="intruder"
    )
    steps = walk(path)
    # Mosquitto accepts the CONNECT and refuses the topic; IoT Core refuses the CONNECT.
    step = stopped_at(steps, "publish")
    assert "Not authorized (reason code 135)" in step.detail
    assert (
        "not authorized: the policy attached to this certificate does not allow client id "
        "'intruder' to publish to edge-app/thing-a/status"
    ) in step.fix
    assert "uplink.client_id 'intruder' is not the thing name 'thing-a'" in step.fix


def test_no_shadow_service_stops_at_shadow(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    path = write_config(tmp_path, "thing-a", policy_broker.tls_port, tls_of(fleet["thing-a"]))
    step = stopped_at(walk(path), "shadow")
    assert step.detail == "no answer to get within 3 s"
    assert "python -m simulator shadow" in step.fix


def test_a_certificate_no_ca_signed_is_refused_by_the_broker(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    pki = fleet["thing-a"]
    tls = {"ca": str(pki.ca), "cert": str(pki.rogue_cert), "key": str(pki.rogue_key)}
    steps = walk(write_config(tmp_path, "thing-a", policy_broker.tls_port, tls))
    # TLS 1.3: the broker's refusal arrives after our side of the handshake has completed
    step = stopped_at(steps, "tls")
    assert step.detail == "the broker ended TLS: TLSV1_ALERT_UNKNOWN_CA"
    assert step.fix.startswith("the broker refused this device's certificate")


def test_nothing_listening_stops_at_tls(tmp_path: Path, fleet: dict[str, Pki]) -> None:
    port = free_port()
    step = stopped_at(
        walk(write_config(tmp_path, "thing-a", port, tls_of(fleet["thing-a"]))), "tls"
    )
    assert "ConnectionRefusedError" in step.detail
    assert f"nothing accepts connections on 127.0.0.1:{port}" in step.fix


def test_a_host_that_does_not_resolve_stops_at_endpoint(
    tmp_path: Path, fleet: dict[str, Pki]
) -> None:
    path = write_config(tmp_path, "thing-a", 8883, tls_of(fleet["thing-a"]), host="edge.invalid")
    step = stopped_at(walk(path), "endpoint")
    assert "edge.invalid does not resolve" in step.detail
    assert "describe-endpoint --endpoint-type iot:Data-ATS" in step.fix


def test_an_invalid_config_stops_at_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("device: {thing_name: 'a b'}\ncameras: []\n")
    step = stopped_at(walk(path), "config")
    assert "device.thing_name" in step.detail
    assert f"edge-app config validate {path}" in step.fix


# -- with the AWS IoT registry (moto) ------------------------------------------------------


def provisioned(tmp_path: Path, iot: IotCalls, thing: str, broker: Mosquitto, pki: Pki) -> Path:
    """Provision ``thing`` against moto, then point its config at the test broker (moto has no
    MQTT endpoint; its certificate is signed by the test CA the broker trusts)."""
    report = provision(iot, tmp_path / thing, thing)
    doc = yaml.safe_load(report.config.read_text())
    doc["uplink"].update(host="127.0.0.1", port=broker.tls_port)
    doc["uplink"]["tls"]["ca"] = str(pki.ca)
    report.config.write_text(yaml.safe_dump(doc))
    return report.config


def lookup(iot: IotCalls) -> Any:
    return lambda facts, config: registry_check(iot, facts, config.device.thing_name)


def test_provisioned_device_passes_every_step_with_the_registry(
    tmp_path: Path,
    iot: IotCalls,
    thing_name: str,
    policy_broker: Mosquitto,
    pki: Pki,
    shadow: ShadowService,
) -> None:
    config = provisioned(tmp_path, iot, thing_name, policy_broker, pki)
    steps = walk(config, registry=lookup(iot))
    assert statuses(steps) == [(n, "ok") for n in ["config", "files", "registry", *STEPS[2:]]]
    assert f"attached to thing {thing_name}, policies: edge-app-device" in steps["registry"].detail


def test_the_registry_finds_an_inactive_or_detached_certificate(
    tmp_path: Path, iot: IotCalls, thing_name: str, policy_broker: Mosquitto, pki: Pki
) -> None:
    config = provisioned(tmp_path, iot, thing_name, policy_broker, pki)
    record = provision(iot, tmp_path / thing_name, thing_name).record
    cert_id, arn = record.certificate_id, record.certificate_arn

    iot.call("update_certificate", certificateId=cert_id, newStatus="INACTIVE")
    step = stopped_at(walk(config, registry=lookup(iot)), "registry")
    assert step.detail == f"certificate {cert_id} is INACTIVE"
    assert step.fix == f"aws iot update-certificate --certificate-id {cert_id} --new-status ACTIVE"

    iot.call("update_certificate", certificateId=cert_id, newStatus="ACTIVE")
    iot.call("detach_thing_principal", thingName=thing_name, principal=arn)
    step = stopped_at(walk(config, registry=lookup(iot)), "registry")
    assert f"is not attached to thing {thing_name}" in step.detail
    assert f"attach-thing-principal --thing-name {thing_name} --principal {arn}" in step.fix

    iot.call("attach_thing_principal", thingName=thing_name, principal=arn)
    iot.call("detach_policy", policyName="edge-app-device", target=arn)
    step = stopped_at(walk(config, registry=lookup(iot)), "registry")
    assert step.detail == f"no policy is attached to certificate {cert_id}"
    assert "attach-policy --policy-name edge-app-device" in step.fix


def test_the_registry_reports_an_unknown_certificate(
    tmp_path: Path, iot: IotCalls, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    path = write_config(tmp_path, "thing-a", policy_broker.tls_port, tls_of(fleet["thing-a"]))
    step = stopped_at(walk(path, registry=lookup(iot)), "registry")
    assert "is not registered in AWS IoT in us-east-1" in step.detail


def test_a_host_the_broker_certificate_is_not_for_stops_at_tls(
    tmp_path: Path, policy_broker: Mosquitto, fleet: dict[str, Pki]
) -> None:
    # Another name of this machine: it reaches the broker, but the broker's certificate is
    # for localhost and 127.0.0.1 only (as IoT Core's is for *.iot.REGION.amazonaws.com).
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        address = ""
    if name == "localhost" or address != "127.0.0.1":
        pytest.skip(f"this machine's name {name!r} does not resolve to 127.0.0.1")
    path = write_config(
        tmp_path, "thing-a", policy_broker.tls_port, tls_of(fleet["thing-a"]), host=name
    )
    step = stopped_at(walk(path), "tls")
    assert f"Hostname mismatch, certificate is not valid for '{name}'" in step.detail
    assert f"the broker's certificate is not for {name}" in step.fix


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Answer(False, "Not authorized (reason code 135)", 135), "not authorized: the policy"),
        (Answer(False, "Client identifier not valid", 133), "not authorized: the policy"),
        (
            Answer(False, "the broker closed the connection (Unspecified error)", closed=True),
            "AWS IoT Core closes the connection without a CONNACK when (a) the certificate",
        ),
        (
            Answer(False, "closed: [SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert", closed=True),
            "the broker refused this device's certificate",
        ),
        (Answer(False, "no CONNACK within 3 s"), "the broker accepted TLS but did not answer"),
    ],
)
def test_each_connect_refusal_gets_its_fix(answer: Answer, expected: str) -> None:
    # IoT Core's own answers to a CONNECT its policy refuses (Mosquitto cannot give them).
    fix = fixes.connect(answer, "intruder", "cam-1", None)
    assert fix.startswith(expected)
    if answer.code is not None:
        assert "client id 'intruder'" in fix
        assert "attach-thing-principal --thing-name cam-1" in fix
