"""An AWS IoT fleet-provisioning emulator over MQTT (provisioning by claim), like ``shadow.py``.

Against a real broker (Mosquitto in tests, plain listener) it answers the device provisioning
MQTT API of AWS IoT, JSON payload format:

* ``$aws/certificates/create-from-csr/json`` ``{"certificateSigningRequest"}``: signs the CSR's
  own public key with the test CA and answers on ``.../accepted`` with ``certificateId``
  (SHA-256 of the DER, as AWS names certificates), ``certificatePem`` and a single-use
  ``certificateOwnershipToken``;
* ``$aws/provisioning-templates/{name}/provision/json`` ``{"certificateOwnershipToken",
  "parameters"}``: for a known template, makes the thing named by the template's pattern
  (``"cam-{SerialNumber}"``) from the parameters and answers ``{"thingName",
  "deviceConfiguration"}`` on ``.../accepted``;
* errors go to ``.../rejected`` as ``{"statusCode", "errorCode", "errorMessage"}``: 400
  ``InvalidCertificateOwnershipToken`` or ``InvalidParameters``, 404 ``ResourceNotFound`` (no
  such template), 400 ``InvalidPayload``.

AWS answers on the requesting connection only; here every subscriber of the answer topic gets
it (the claim certificate's ACL lets only claim connections read them).
"""

from __future__ import annotations

__all__ = ["FleetProvisioning", "sign_csr"]

import datetime
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from simulator.peer import SubscribingPeer

_CSR_TOPIC = "$aws/certificates/create-from-csr/json"
_PROVISION_TOPIC = "$aws/provisioning-templates/{name}/provision/json"


def sign_csr(csr_pem: str, ca_cert: Path, ca_key: Path, *, days: int = 2) -> str:
    """A client certificate (PEM) for the public key and subject of ``csr_pem``, signed by the
    CA in ``ca_cert``/``ca_key``: what AWS IoT does with a CSR."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class FleetProvisioning(SubscribingPeer):
    """The fleet-provisioning service on the broker at ``host:port`` (plain listener).

    ``templates`` maps a template name to the pattern of the thing names it makes, e.g.
    ``{"edge-app": "cam-{SerialNumber}"}``. ``things`` (thing -> certificate id) and
    ``certificates`` (id -> PEM) record what it made. Use as a context manager.
    """

    name = "fleet provisioning"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ca_cert: Path,
        ca_key: Path,
        templates: Mapping[str, str],
        client_id: str = "fleet-provisioning",
    ) -> None:
        topics = [(_CSR_TOPIC, 1), (_PROVISION_TOPIC.format(name="+"), 1)]
        super().__init__(host, port, topics, client_id=client_id)
        self._ca_cert, self._ca_key = ca_cert, ca_key
        self._templates = dict(templates)
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # ownership token -> certificate id
        self.certificates: dict[str, str] = {}
        self.things: dict[str, str] = {}

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            request = json.loads(msg.payload)
        except ValueError as exc:
            self._reject(msg.topic, 400, "InvalidPayload", f"payload is not JSON: {exc}")
            return
        if not isinstance(request, dict):
            self._reject(msg.topic, 400, "InvalidPayload", "payload is not a JSON object")
            return
        if msg.topic == _CSR_TOPIC:
            self._create_from_csr(request)
            return
        parts = msg.topic.split("/")  # $aws/provisioning-templates/{name}/provision/json
        self._provision(parts[2], request)

    def _create_from_csr(self, request: dict[str, Any]) -> None:
        csr = request.get("certificateSigningRequest")
        if not isinstance(csr, str):
            self._reject(
                _CSR_TOPIC, 400, "InvalidPayload", "certificateSigningRequest: not a string"
            )
            return
        try:
            pem = sign_csr(csr, self._ca_cert, self._ca_key)
        except ValueError as exc:
            self._reject(_CSR_TOPIC, 400, "InvalidPayload", f"bad CSR: {exc}")
            return
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
        cert_id = hashlib.sha256(der).hexdigest()
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.certificates[cert_id] = pem
            self._tokens[token] = cert_id
        answer = {
            "certificateId": cert_id,
            "certificatePem": pem,
            "certificateOwnershipToken": token,
        }
        self._send(f"{_CSR_TOPIC}/accepted", answer)

    def _provision(self, template: str, request: dict[str, Any]) -> None:
        topic = _PROVISION_TOPIC.format(name=template)
        pattern = self._templates.get(template)
        if pattern is None:
            self._reject(topic, 404, "ResourceNotFound", f"no template named {template}")
            return
        with self._lock:
            cert_id = self._tokens.pop(str(request.get("certificateOwnershipToken")), None)
        if cert_id is None:
            self._reject(
                topic, 400, "InvalidCertificateOwnershipToken", "the ownership token is not valid"
            )
            return
        parameters = request.get("parameters") or {}
        try:
            thing = pattern.format(**parameters)
        except (KeyError, TypeError) as exc:
            self._reject(topic, 400, "InvalidParameters", f"missing template parameter {exc}")
            return
        with self._lock:
            self.things[thing] = cert_id
        self._send(f"{topic}/accepted", {"thingName": thing, "deviceConfiguration": {}})

    def _reject(self, request_topic: str, status: int, code: str, message: str) -> None:
        body = {"statusCode": status, "errorCode": code, "errorMessage": message}
        self._send(f"{request_topic}/rejected", body)

    def _send(self, topic: str, body: Mapping[str, Any]) -> None:
        self._client.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)
