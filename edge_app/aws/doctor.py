"""``edge-app aws check``: walk the path from the config file to the shadow, step by step.

Steps, in order; the first failure stops the walk (the later steps need it) and carries the fix:

    config     the file validates; the thing, broker, client id and topic prefix it implies
    files      CA, certificate and key readable, key private (0600), certificate in date and
               made for that key
    registry   (optional, needs AWS credentials) the certificate is known to AWS IoT, ACTIVE,
               attached to the thing and to a policy
    endpoint   the broker's host name resolves
    tls        TCP connect and TLS handshake; the broker's certificate verified against the CA,
               and (TLS 1.3) up to 1 s for the broker to refuse the device's certificate
    mqtt       CONNECT answered by a successful CONNACK
    publish    a QoS 1 publish to the device's own status topic is acknowledged
    shadow     the named shadow ``edge-config`` answers a ``get`` (a 404, no shadow yet, is fine)

The check connects with the device's own client id: AWS IoT Core (and Mosquitto) drop an
older connection with the same client id, so stop the daemon first. It publishes one
non-retained ``{"state": "check"}`` message on the status topic and nothing else.
"""

from __future__ import annotations

__all__ = ["CheckStep", "run_check"]

import json
import secrets
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from edge_app.aws import fixes
from edge_app.aws.credentials import CertificateFacts, certificate_facts, load_private_key
from edge_app.aws.credentials import public_key_pem as key_pem
from edge_app.aws.policy import TOPIC_PREFIX
from edge_app.aws.probe import Answer, MqttProbe
from edge_app.config import AppConfig, load_config
from edge_app.errors import ConfigError, EdgeAppError
from edge_app.remote import ShadowTopics
from edge_app.uplink import tls_context

Status = Literal["ok", "fail", "skip"]
_ALERT_WAIT_S = 1.0
"""How long the tls step waits for a TLS 1.3 broker to refuse the client certificate, seconds."""


@dataclass(frozen=True, slots=True)
class CheckStep:
    """One step's outcome: ``status`` ok, fail or skip, what was found, and for a failure
    what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""


RegistryCheck = Callable[[CertificateFacts, AppConfig], CheckStep]
"""Looks the certificate up in AWS IoT for the config's thing (``edge_app.aws.registry``)."""


@dataclass
class _Walk:
    """What the steps learn and hand on to the next ones."""

    path: Path
    timeout_s: float
    config: AppConfig | None = None
    facts: CertificateFacts | None = None
    probe: MqttProbe | None = None
    context: ssl.SSLContext | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> AppConfig:
        if self.config is None:
            raise RuntimeError("the config step has not run")
        return self.config

    @property
    def client_id(self) -> str:
        return self.cfg.uplink.client_id or self.cfg.device.thing_name


def run_check(
    config_path: Path, *, timeout_s: float = 10.0, registry: RegistryCheck | None = None
) -> Iterator[CheckStep]:
    """The steps' outcomes, one by one as they finish; after a failure the remaining steps
    come as ``skip``. ``registry`` (optional) adds the AWS IoT lookup after ``files``."""
    walk = _Walk(config_path, timeout_s)
    steps: list[tuple[str, Callable[[_Walk], CheckStep]]] = [
        ("config", _config),
        ("files", _files),
    ]
    if registry is not None:
        steps.append(("registry", lambda w: _registry(w, registry)))
    steps += [
        ("endpoint", _endpoint),
        ("tls", _tls),
        ("mqtt", _mqtt),
        ("publish", _publish),
        ("shadow", _shadow),
    ]
    failed = False
    try:
        for name, step in steps:
            if failed:
                yield CheckStep(name, "skip", "not run (fix the failure above first)")
                continue
            result = step(walk)
            failed = result.status == "fail"
            yield result
    finally:
        if walk.probe is not None:
            walk.probe.close()


def _registry(walk: _Walk, registry: RegistryCheck) -> CheckStep:
    if walk.facts is None:
        return CheckStep("registry", "skip", "no device certificate (plain TCP)")
    return registry(walk.facts, walk.cfg)


def _config(walk: _Walk) -> CheckStep:
    try:
        config = load_config(walk.path)
    except ConfigError as exc:
        errors = "; ".join(str(e) for e in exc.errors)
        return CheckStep(
            "config",
            "fail",
            f"{exc.source}: {errors}",
            f"correct the field(s) named above (edge-app config validate {walk.path})",
        )
    walk.config = config
    up = config.uplink
    if not up.enabled:
        return CheckStep(
            "config", "fail", "uplink.enabled is false", "set uplink.enabled: true to deliver"
        )
    thing = config.device.thing_name
    detail = f"thing {thing}, broker {up.host}:{up.port}, client id {walk.client_id}"
    if up.tls is None:
        detail += ", plain TCP (uplink.insecure_plaintext)"
    if walk.client_id != thing:
        walk.notes.append(fixes.client_id_note(walk.client_id, thing))
    if up.topic_prefix != TOPIC_PREFIX:
        walk.notes.append(fixes.prefix_note(up.topic_prefix))
    return CheckStep("config", "ok", detail)


def _files(walk: _Walk) -> CheckStep:
    tls = walk.cfg.uplink.tls
    if tls is None:
        return CheckStep("files", "skip", "no TLS files (plain TCP)")
    try:
        key = load_private_key(tls.key)
        cert_data = _read(tls.cert, "uplink.tls.cert")
        facts = certificate_facts(cert_data, f"uplink.tls.cert ({tls.cert})")
        certificate_facts(_read(tls.ca, "uplink.tls.ca"), f"uplink.tls.ca ({tls.ca})")
    except EdgeAppError as exc:
        return CheckStep("files", "fail", str(exc), fixes.FILES)
    walk.facts = facts
    now = datetime.now(UTC)
    if key_pem(key) != facts.public_key_pem:
        return CheckStep(
            "files",
            "fail",
            f"the certificate {tls.cert} is not for the key {tls.key} (cert/key mismatch)",
            fixes.MISMATCH,
        )
    if not facts.not_before <= now <= facts.not_after:
        return CheckStep(
            "files",
            "fail",
            f"the certificate {tls.cert} is valid from {facts.not_before:%Y-%m-%d %H:%M} to "
            f"{facts.not_after:%Y-%m-%d %H:%M} UTC; it is now {now:%Y-%m-%d %H:%M} UTC",
            fixes.DATES,
        )
    return CheckStep(
        "files",
        "ok",
        f"CA, certificate and key readable; the certificate matches the key; certificate id "
        f"{facts.certificate_id[:12]}..., valid until {facts.not_after:%Y-%m-%d}",
    )


def _read(path: Path, field_name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EdgeAppError(f"cannot read {field_name} {path}: {exc.strerror}") from exc


def _endpoint(walk: _Walk) -> CheckStep:
    up = walk.cfg.uplink
    try:
        infos = socket.getaddrinfo(up.host, up.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return CheckStep("endpoint", "fail", f"{up.host} does not resolve: {exc}", fixes.DNS)
    addresses = sorted({str(info[4][0]) for info in infos})
    return CheckStep("endpoint", "ok", f"{up.host} resolves to {', '.join(addresses[:3])}")


def _tls(walk: _Walk) -> CheckStep:
    up = walk.cfg.uplink
    if up.tls is None:
        return CheckStep("tls", "skip", "plain TCP: no TLS (uplink.insecure_plaintext)")
    context = tls_context(up.tls)
    try:
        with (
            socket.create_connection((up.host, up.port), walk.timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=up.host) as tls,
        ):
            version = tls.version()
            if version == "TLSv1.3" and _refused_after_handshake(tls, walk.timeout_s):
                return CheckStep(
                    "tls",
                    "fail",
                    "the broker closed the connection after the handshake",
                    fixes.ALERT,
                )
    except ssl.SSLCertVerificationError as exc:
        return CheckStep("tls", "fail", f"{exc.verify_message}", fixes.server_cert(exc, up))
    except ssl.SSLError as exc:
        return CheckStep("tls", "fail", f"the broker ended TLS: {exc.reason or exc}", fixes.ALERT)
    except OSError as exc:
        return CheckStep("tls", "fail", _socket_error(exc), fixes.network(exc, up.host, up.port))
    walk.context = context
    return CheckStep("tls", "ok", f"{version} with {up.host}; its certificate verified")


def _refused_after_handshake(tls: ssl.SSLSocket, timeout_s: float) -> bool:
    """TLS 1.3 completes the client's handshake before the server has checked the client
    certificate; a refusal arrives as an alert on the first read. Wait briefly for one: the
    broker sends nothing else before our CONNECT. Raises the alert's ``ssl.SSLError``."""
    tls.settimeout(min(timeout_s, _ALERT_WAIT_S))
    try:
        return tls.recv(1) == b""
    except TimeoutError:
        return False


def _socket_error(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def _mqtt(walk: _Walk) -> CheckStep:
    up = walk.cfg.uplink
    probe = MqttProbe(
        up.host,
        up.port,
        client_id=walk.client_id,
        context=walk.context,
        timeout_s=walk.timeout_s,
        keepalive_s=up.keepalive_s,
    )
    walk.probe = probe
    answer = probe.connect()
    if answer.ok:
        return CheckStep("mqtt", "ok", f"CONNACK: connected as client id {walk.client_id}")
    fix = fixes.connect(answer, walk.client_id, walk.cfg.device.thing_name, walk.facts)
    return CheckStep("mqtt", "fail", f"CONNECT refused: {answer.reason}", _with_notes(walk, fix))


def _publish(walk: _Walk) -> CheckStep:
    probe = _probe(walk)
    topic = f"{walk.cfg.topic_prefix}/status"
    body = json.dumps({"state": "check", "client_id": walk.client_id}).encode()
    answer = probe.publish(topic, body)
    if answer.ok:
        return CheckStep("publish", "ok", f"PUBACK for {topic}")
    fix = fixes.not_authorized("publish to", topic, walk.client_id, walk.cfg.device.thing_name)
    return CheckStep(
        "publish", "fail", f"publish to {topic}: {answer.reason}", _with_notes(walk, fix)
    )


def _shadow(walk: _Walk) -> CheckStep:
    probe = _probe(walk)
    thing, client_id = walk.cfg.device.thing_name, walk.client_id
    topics = ShadowTopics(thing)
    for topic in (topics.get_accepted, topics.get_rejected):
        answer = probe.subscribe(topic)
        if not answer.ok:
            fix = fixes.not_authorized("subscribe to", topic, client_id, thing)
            return CheckStep(
                "shadow", "fail", f"subscribe to {topic}: {answer.reason}", _with_notes(walk, fix)
            )
    token = secrets.token_hex(8)
    answer = probe.publish(topics.get, json.dumps({"clientToken": token}).encode())
    if not answer.ok:
        fix = fixes.not_authorized("publish to", topics.get, client_id, thing)
        return CheckStep(
            "shadow", "fail", f"publish to {topics.get}: {answer.reason}", _with_notes(walk, fix)
        )
    got = probe.wait_message(lambda t, p: _token(p) == token)
    if got is None:
        why = probe_closed_or_silent(answer, walk.timeout_s)
        return CheckStep("shadow", "fail", why, fixes.no_shadow(topics.prefix))
    topic, payload = got
    doc = json.loads(payload)
    if topic == topics.get_accepted:
        return CheckStep("shadow", "ok", f"edge-config shadow: version {doc.get('version')}")
    if doc.get("code") == 404:
        return CheckStep("shadow", "ok", "no edge-config shadow yet (404): fine for a new device")
    return CheckStep(
        "shadow",
        "fail",
        f"the shadow service refused get: {doc.get('code')} {doc.get('message')}",
        "see the code above (AWS IoT Device Shadow errors); 403: the policy must allow the get",
    )


def probe_closed_or_silent(answer: Answer, timeout_s: float) -> str:
    """Why no shadow answer came: a closed connection, or silence for ``timeout_s``."""
    if answer.closed:
        return f"no answer to get: {answer.reason}"
    return f"no answer to get within {timeout_s:g} s"


def _token(payload: bytes) -> object:
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return doc.get("clientToken") if isinstance(doc, dict) else None


def _probe(walk: _Walk) -> MqttProbe:
    if walk.probe is None:
        raise RuntimeError("the mqtt step has not run")
    return walk.probe


def _with_notes(walk: _Walk, fix: str) -> str:
    return " ".join([*walk.notes, fix])
