"""Fleet provisioning by claim, against the fleet-provisioning emulator on the policy broker:
a device with the shared claim certificate gets its own key, certificate and thing over MQTT,
then passes ``aws check`` as that thing; the claim certificate can do nothing else."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge_app.aws import MqttProbe, claim, run_check
from edge_app.cli import main
from edge_app.config import TlsConfig, load_config
from edge_app.errors import ProvisionError
from edge_app.uplink import tls_context
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.fleet import FleetProvisioning
from simulator.shadow import ShadowService
from tests.conftest import TEMPLATE

pytestmark = pytest.mark.broker


@pytest.fixture
def service(policy_broker: Mosquitto, pki: Pki) -> Iterator[FleetProvisioning]:
    with FleetProvisioning(
        policy_broker.host,
        policy_broker.port,
        ca_cert=pki.ca,
        ca_key=pki.ca.parent / "ca.key",
        templates={TEMPLATE: "cam-{SerialNumber}"},
    ) as fleet:
        yield fleet


def claim_tls(claim_pki: Pki) -> TlsConfig:
    return TlsConfig(ca=claim_pki.ca, cert=claim_pki.client_cert, key=claim_pki.client_key)


def test_a_device_claims_its_own_identity_and_then_works_as_that_thing(
    tmp_path: Path,
    policy_broker: Mosquitto,
    claim_pki: Pki,
    service: FleetProvisioning,
) -> None:
    out = tmp_path / "dev"
    report = claim(
        policy_broker.host,
        policy_broker.tls_port,
        claim_tls=claim_tls(claim_pki),
        template=TEMPLATE,
        parameters={"SerialNumber": "0042"},
        folder=out,
        region="eu-west-1",
        timeout_s=5,
    )
    assert report.thing == "cam-0042"
    assert service.things == {"cam-0042": report.certificate_id}
    key = serialization.load_pem_private_key((out / "private.pem.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((out / "device.pem.crt").read_bytes())
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        "private.pem.key": 0o600,
        "device.pem.crt": 0o600,
        "edge-app.yaml": 0o600,
    }
    config = load_config(report.config)
    assert config.device.thing_name == "cam-0042"
    assert (config.uplink.host, config.uplink.port) == (policy_broker.host, policy_broker.tls_port)

    with ShadowService(policy_broker.host, policy_broker.port, client_id="claim-shadow"):
        steps = [(s.name, s.status) for s in run_check(report.config, timeout_s=3)]
    assert all(status == "ok" for _, status in steps), steps


def test_the_claim_certificate_may_do_nothing_but_provision(
    policy_broker: Mosquitto, claim_pki: Pki, fleet: dict[str, Pki]
) -> None:
    context = tls_context(claim_tls(claim_pki))
    with MqttProbe(
        policy_broker.host, policy_broker.tls_port, client_id="thing-a", context=context
    ) as probe:
        assert probe.connect().ok
        for topic in (
            "edge-app/thing-a/events",
            "$aws/things/thing-a/shadow/name/edge-config/update",
            "$aws/provisioning-templates/other-template/provision/json",
        ):
            assert probe.publish(topic, b"{}").code == 135, topic


def test_a_rejected_registration_says_why(
    tmp_path: Path, policy_broker: Mosquitto, claim_pki: Pki, service: FleetProvisioning
) -> None:
    with pytest.raises(ProvisionError, match=r"rejected: 400 InvalidParameters: missing .*Serial"):
        claim(
            policy_broker.host,
            policy_broker.tls_port,
            claim_tls=claim_tls(claim_pki),
            template=TEMPLATE,
            parameters={"Serial": "1"},
            folder=tmp_path / "dev",
            region="eu-west-1",
            timeout_s=5,
        )
    assert service.things == {}
    assert not (tmp_path / "dev" / "device.pem.crt").exists()


def test_a_template_the_claim_policy_does_not_name_is_refused(
    tmp_path: Path, policy_broker: Mosquitto, claim_pki: Pki, service: FleetProvisioning
) -> None:
    with pytest.raises(ProvisionError, match=r"may not publish to .*/other/provision/json"):
        claim(
            policy_broker.host,
            policy_broker.tls_port,
            claim_tls=claim_tls(claim_pki),
            template="other",
            parameters={"SerialNumber": "1"},
            folder=tmp_path / "dev",
            region="eu-west-1",
            timeout_s=5,
        )


def test_no_provisioning_service_is_a_clear_error(
    tmp_path: Path, policy_broker: Mosquitto, claim_pki: Pki
) -> None:
    with pytest.raises(ProvisionError, match=r"no answer on .*create-from-csr/json/accepted"):
        claim(
            policy_broker.host,
            policy_broker.tls_port,
            claim_tls=claim_tls(claim_pki),
            template=TEMPLATE,
            parameters={},
            folder=tmp_path / "dev",
            region="eu-west-1",
            timeout_s=1,
        )


def test_the_claim_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy_broker: Mosquitto,
    claim_pki: Pki,
    service: FleetProvisioning,
) -> None:
    out = tmp_path / "dev"
    argv = [
        "aws", "claim", "--endpoint", policy_broker.host, "--port", str(policy_broker.tls_port),
        "--claim-cert", str(claim_pki.client_cert), "--claim-key", str(claim_pki.client_key),
        "--ca", str(claim_pki.ca), "--template", TEMPLATE, "--param", "SerialNumber=7",
        "--out", str(out), "--timeout", "5",
    ]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("claimed thing cam-7 (certificate ")
    assert main(argv) == 2  # a second claim into the same folder is refused
    assert "device.pem.crt exists: this device is provisioned already" in capsys.readouterr().err
    assert main([*argv[:-4], "--param", "bad", "--out", str(tmp_path / "x")]) == 2
    assert "--param 'bad': write KEY=VALUE" in capsys.readouterr().err
