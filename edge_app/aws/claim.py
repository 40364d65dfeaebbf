"""``claim``: fleet provisioning by claim, the device getting its own identity over MQTT.

A device that boots with a *claim* certificate (shared by a batch of devices, allowed nothing
but the provisioning API) obtains its own certificate and thing from AWS IoT:

1. its own private key is made here (as in ``provision``; it never leaves the device);
2. connected with the claim certificate, it sends a CSR to
   ``$aws/certificates/create-from-csr/json`` and gets a certificate for that key and a
   one-time ``certificateOwnershipToken`` (the answer is checked to be for this key);
3. it asks ``$aws/provisioning-templates/{template}/provision/json`` to register a thing with
   that token and its ``parameters`` (e.g. ``SerialNumber``); the template (in the cloud)
   creates the thing, attaches the policy and activates the certificate, and answers with the
   thing name;
4. the certificate and a starting ``edge-app.yaml`` (that thing, the same endpoint and CA)
   are written beside the key, 0600.

Each request subscribes to its ``accepted``/``rejected`` topics first, as AWS requires. The
device needs no AWS credentials. A folder that already holds a device certificate is refused.
"""

from __future__ import annotations

__all__ = ["ClaimReport", "claim"]

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.aws.credentials import certificate_facts, csr_pem, public_key_pem
from edge_app.aws.deviceconfig import render_device_config
from edge_app.aws.probe import MqttProbe
from edge_app.aws.provision import load_or_make_key
from edge_app.aws.record import CERT_FILE, CONFIG_FILE
from edge_app.config import TlsConfig
from edge_app.config.base import THING_NAME
from edge_app.errors import EdgeAppError, ProvisionError
from edge_app.files import private_dir, write_atomic
from edge_app.uplink import tls_context

CSR_TOPIC = "$aws/certificates/create-from-csr/json"
PROVISION_TOPIC = "$aws/provisioning-templates/{template}/provision/json"
_TEMPLATE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,36}$")


@dataclass(frozen=True, slots=True)
class ClaimReport:
    """What ``claim`` obtained: the thing, its certificate id and the config written."""

    thing: str
    certificate_id: str
    config: Path


def claim(
    host: str,
    port: int,
    *,
    claim_tls: TlsConfig,
    template: str,
    parameters: Mapping[str, str],
    folder: Path,
    region: str,
    timeout_s: float = 10.0,
) -> ClaimReport:
    """Provision this device by claim through the broker at ``host:port`` (AWS IoT Core's
    endpoint) and write its files to ``folder``. ``claim_tls`` holds the broker's CA and the
    claim certificate and key. Raises ``ProvisionError`` saying which step failed and why."""
    if not _TEMPLATE_NAME.match(template):
        raise ProvisionError(f"invalid template name {template!r}: 1-36 of A-Z a-z 0-9 _ -")
    try:
        private_dir(folder)
    except OSError as exc:
        raise ProvisionError(f"cannot create the folder {folder}: {exc.strerror}") from exc
    if (folder / CERT_FILE).exists():
        raise ProvisionError(
            f"{folder / CERT_FILE} exists: this device is provisioned already; use another "
            "--out folder to claim a new identity"
        )
    key, _ = load_or_make_key(folder)
    try:
        context = tls_context(claim_tls)
    except EdgeAppError as exc:
        raise ProvisionError(f"the claim certificate cannot be used: {exc}") from exc
    client_id = f"claim-{secrets.token_hex(6)}"
    with MqttProbe(host, port, client_id=client_id, context=context, timeout_s=timeout_s) as probe:
        answer = probe.connect()
        if not answer.ok:
            raise ProvisionError(
                f"cannot connect to {host}:{port} with the claim certificate: {answer.reason}"
            )
        created = _request(
            probe, CSR_TOPIC, {"certificateSigningRequest": csr_pem(key, "edge-app device")}
        )
        pem = str(created.get("certificatePem", "")).encode()
        facts = certificate_facts(pem, "the certificate of CreateCertificateFromCsr")
        if facts.public_key_pem != public_key_pem(key):
            raise ProvisionError(
                "AWS IoT returned a certificate for another key than this device's"
            )
        registered = _request(
            probe,
            PROVISION_TOPIC.format(template=template),
            {
                "certificateOwnershipToken": created.get("certificateOwnershipToken"),
                "parameters": dict(parameters),
            },
        )
    thing = str(registered.get("thingName", ""))
    if not re.match(THING_NAME, thing):
        raise ProvisionError(f"the template answered an invalid thing name {thing!r}")
    _write(folder / CERT_FILE, pem)
    config = folder / CONFIG_FILE
    if not config.exists():
        text = render_device_config(
            folder, CONFIG_FILE, thing=thing, endpoint=host, region=region, port=port,
            ca=claim_tls.ca,
        )  # fmt: skip
        _write(config, text.encode())
    return ClaimReport(thing, facts.certificate_id, config)


def _request(probe: MqttProbe, topic: str, body: dict[str, Any]) -> dict[str, Any]:
    """Publish ``body`` to ``topic`` and wait for its ``accepted`` (returned) or ``rejected``
    (``ProvisionError``) answer."""
    for suffix in ("accepted", "rejected"):
        answer = probe.subscribe(f"{topic}/{suffix}")
        if not answer.ok:
            raise ProvisionError(
                f"the claim certificate may not subscribe to {topic}/{suffix} ({answer.reason}): "
                "its policy must allow the provisioning topics (docs/aws-device.md)"
            )
    answer = probe.publish(topic, json.dumps(body).encode())
    if not answer.ok:
        raise ProvisionError(
            f"the claim certificate may not publish to {topic} ({answer.reason}): its policy "
            "must allow the provisioning topics (docs/aws-device.md)"
        )
    got = probe.wait_message(lambda t, _p: t in (f"{topic}/accepted", f"{topic}/rejected"))
    if got is None:
        raise ProvisionError(
            f"no answer on {topic}/accepted or /rejected: is fleet provisioning set up for this "
            "endpoint (and the template named right)?"
        )
    answer_topic, payload = got
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise ProvisionError(f"the answer on {answer_topic} is not JSON") from exc
    if not isinstance(doc, dict):
        raise ProvisionError(f"the answer on {answer_topic} is not a JSON object")
    if answer_topic.endswith("/rejected"):
        raise ProvisionError(
            f"{topic} was rejected: {doc.get('statusCode')} {doc.get('errorCode')}: "
            f"{doc.get('errorMessage')}"
        )
    return doc


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise ProvisionError(f"cannot write {path}: {exc.strerror}") from exc
