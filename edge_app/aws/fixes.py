"""What to do about each failure ``edge-app aws check`` can find: the texts of its fixes.

Kept apart from the steps so that every message can be read (and reviewed) in one place;
``docs/aws-device.md`` ("Troubleshooting") lists them with their causes.
"""

from __future__ import annotations

__all__ = [
    "ALERT",
    "DATES",
    "DNS",
    "FILES",
    "MISMATCH",
    "client_id_note",
    "connect",
    "network",
    "no_shadow",
    "not_authorized",
    "prefix_note",
    "server_cert",
]

import ssl

from edge_app.aws.credentials import CertificateFacts
from edge_app.aws.policy import DEFAULT_POLICY_NAME, TOPIC_PREFIX
from edge_app.aws.probe import Answer
from edge_app.config import UplinkConfig

# MQTT 5 CONNACK reason codes that mean "you may not connect like this".
_REFUSED_IDENTITY = {0x85, 0x86, 0x87, 0x8A}  # client id not valid, bad credentials, not
# authorized, banned
_X509_HOSTNAME_MISMATCH = 62
_X509_NOT_YET_VALID = 9
_X509_EXPIRED = 10

FILES = (
    "check the paths in uplink.tls (relative ones are relative to the config file) and that "
    "this user may read them; `edge-app aws provision` writes all three"
)
MISMATCH = (
    "the certificate and the key were not made together: put the certificate AWS IoT issued "
    "for this key in uplink.tls.cert (provision writes both into its --out folder), or "
    "provision the device again"
)
DATES = (
    "check the device's clock (timedatectl); an expired certificate needs a new one "
    "(edge-app aws provision into a new folder, then --teardown the old one)"
)
DNS = (
    "check uplink.host: for AWS IoT Core it is the account's endpoint, `aws iot "
    "describe-endpoint --endpoint-type iot:Data-ATS` (xxxxxxxx-ats.iot.REGION.amazonaws.com); "
    "and the device's DNS (/etc/resolv.conf)"
)
ALERT = (
    "the broker refused this device's certificate: on AWS IoT Core it must be registered and "
    "ACTIVE in the account and region of uplink.host (`edge-app aws check --registry` looks it "
    "up); on your own broker, the CA it trusts must have signed it"
)


def server_cert(exc: ssl.SSLCertVerificationError, uplink: UplinkConfig) -> str:
    """The fix when the broker's certificate does not verify."""
    code = exc.verify_code
    if code == _X509_HOSTNAME_MISMATCH:
        return (
            f"the broker's certificate is not for {uplink.host}: set uplink.host exactly as "
            "`aws iot describe-endpoint --endpoint-type iot:Data-ATS` prints it"
        )
    if code in (_X509_EXPIRED, _X509_NOT_YET_VALID):
        return "the broker's certificate is out of date for this device: check its clock"
    ca = uplink.tls.ca if uplink.tls is not None else "?"
    return (
        f"the broker's certificate is not signed by the CA in uplink.tls.ca ({ca}): for AWS IoT "
        "Core's ATS endpoint use Amazon Root CA 1 (AmazonRootCA1.pem, written by `edge-app aws "
        "provision`); for your own broker, the CA that signed its certificate"
    )


def network(exc: OSError, host: str, port: int) -> str:
    """The fix when TCP to the broker fails."""
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections on {host}:{port}: check uplink.port (IoT Core: 8883)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {host}:{port}: a firewall may block outgoing TCP port {port}"
    return "check the device's network connection and uplink.host/uplink.port"


def connect(answer: Answer, client_id: str, thing: str, facts: CertificateFacts | None) -> str:
    """The fix when CONNECT is refused, closed or unanswered."""
    cert = f"certificate {facts.certificate_id[:12]}..." if facts else "the certificate"
    if answer.code in _REFUSED_IDENTITY:
        return (
            f"not authorized: the policy attached to this certificate does not allow client id "
            f"{client_id!r}. With the policy of `edge-app aws provision` the client id must be "
            f"the thing name ({thing!r}), that thing must be attached to {cert} (aws iot "
            f"attach-thing-principal --thing-name {thing} --principal CERT_ARN) and the policy "
            f"too (aws iot attach-policy --policy-name {DEFAULT_POLICY_NAME} --target CERT_ARN)"
        )
    if answer.closed and "ALERT" in answer.reason.upper():
        return ALERT
    if answer.closed:
        return (
            "AWS IoT Core closes the connection without a CONNACK when (a) the certificate is "
            f"not registered or not ACTIVE in the account of uplink.host ({cert}), or (b) the "
            f"policy attached to it does not allow client id {client_id!r} (it must be the thing "
            f"name {thing!r}, attached to the certificate); `edge-app aws check --registry` looks "
            "both up"
        )
    return "the broker accepted TLS but did not answer CONNECT: is uplink.port its MQTT port?"


def not_authorized(verb: str, topic: str, client_id: str, thing: str) -> str:
    """The fix when a publish or subscribe is refused (or the connection closed on it)."""
    return (
        f"not authorized: the policy attached to this certificate does not allow client id "
        f"{client_id!r} to {verb} {topic}. The policy of `edge-app aws provision` lets a device "
        f"use only its own topics ({TOPIC_PREFIX}/..., its edge-config shadow, its jobs), and "
        f"only under client id = thing name ({thing!r})"
    )


def no_shadow(prefix: str) -> str:
    """The fix when nobody answers a shadow ``get``."""
    return (
        f"nothing answered on {prefix}/get/accepted or .../get/rejected. On AWS IoT Core the "
        "policy must allow iot:Subscribe and iot:Receive there (the provision policy does); "
        "with a test broker, start the shadow emulator: python -m simulator shadow --host H "
        "--port P"
    )


def client_id_note(client_id: str, thing: str) -> str:
    """A remark added to authorization failures when the client id is not the thing name."""
    return (
        f"Note: uplink.client_id {client_id!r} is not the thing name {thing!r}; the provision "
        "policy allows only the thing name: remove uplink.client_id."
    )


def prefix_note(prefix: str) -> str:
    """A remark added to authorization failures when the topic prefix is not the default."""
    return (
        f"Note: uplink.topic_prefix {prefix!r} is not {TOPIC_PREFIX!r}, the only prefix the "
        "provision policy allows."
    )
