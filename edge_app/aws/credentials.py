"""The device's TLS credentials: its private key, the CSR IoT signs, and the Amazon root CA.

The private key is made here, on the device, and never leaves it: AWS IoT sees only a
certificate signing request (``create_certificate_from_csr``). Keys are EC P-256 (what AWS IoT
and the test PKI use; fast on a Pi), written PKCS#8 PEM, unencrypted (the daemon starts
unattended), mode 0600 through ``edge_app.files``.

The Amazon Root CA 1 (the CA of IoT Core's ATS endpoints) comes from ``certifi``'s bundle,
found by its pinned SHA-256 fingerprint, so no download is needed and a tampered bundle is
noticed. ``cryptography`` and ``certifi`` come with the ``edge-app[aws]`` extra; the CLI
imports this package only for the ``aws`` commands.
"""

from __future__ import annotations

__all__ = [
    "AMAZON_ROOT_CA1_SHA256",
    "CertificateFacts",
    "amazon_root_ca1",
    "certificate_facts",
    "certificate_id",
    "csr_pem",
    "load_private_key",
    "new_private_key",
    "public_key_pem",
    "write_amazon_root_ca1",
]

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from edge_app.errors import ProvisionError
from edge_app.files import PRIVATE_FILE, loose_bits, private_dir, read_nofollow, write_atomic

AMAZON_ROOT_CA1_SHA256 = "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
"""SHA-256 of Amazon Root CA 1 (DER), as published at https://www.amazontrust.com/repository/."""
_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)


def new_private_key(path: Path) -> PrivateKeyTypes:
    """Make a new EC P-256 key and write it to ``path`` (PKCS#8 PEM, mode 0600, created
    only if nothing is there: a key is never overwritten). Raises ``ProvisionError``."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_atomic(path, pem, mode=PRIVATE_FILE, exclusive=True)
    except FileExistsError as exc:
        raise ProvisionError(f"{path} appeared meanwhile; not overwriting a key") from exc
    except OSError as exc:
        raise ProvisionError(f"cannot write the private key {path}: {exc.strerror}") from exc
    return key


def load_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path``. Refuses (``ProvisionError``) a key that
    group or others may read, a symlink, an encrypted key or a file that is not a key; the
    message names the file, never its content."""
    try:
        data = read_nofollow(path)
        mode = path.stat().st_mode
    except OSError as exc:
        raise ProvisionError(f"cannot read the private key {path}: {exc.strerror}") from exc
    if loose_bits(mode):
        raise ProvisionError(
            f"the private key {path} may be read by group or others (mode "
            f"{mode & 0o777:o}): chmod 600 {path}"
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # raised for an encrypted key given no password
        raise ProvisionError(
            f"the private key {path} is encrypted: edge-app needs an unencrypted key (mode 0600)"
        ) from exc
    except ValueError as exc:
        raise ProvisionError(f"{path} does not hold a PEM private key") from exc


def public_key_pem(key: Any) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key, public key or certificate: two of them
    are the same key pair exactly when these bytes are equal."""
    public = key.public_key() if hasattr(key, "public_key") else key
    pem: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def csr_pem(key: PrivateKeyTypes, common_name: str) -> str:
    """A PEM certificate signing request for ``key`` with subject ``CN=common_name`` (AWS IoT
    ignores the subject and signs the public key; the name helps a human reading the cert)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject)
    signed = request.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    pem: bytes = signed.public_bytes(serialization.Encoding.PEM)
    return pem.decode("ascii")


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What the device check and provisioning need to know of a PEM certificate."""

    public_key_pem: bytes
    not_before: datetime
    not_after: datetime
    subject: str
    issuer: str
    certificate_id: str
    """AWS IoT's id of the certificate: the SHA-256 of its DER encoding, hex."""


def certificate_facts(pem: bytes, source: str) -> CertificateFacts:
    """Facts of the first certificate in ``pem``; ``ProvisionError`` naming ``source`` when
    it is not a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ProvisionError(f"{source} does not hold a PEM certificate") from exc
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateFacts(
        public_key_pem=public_key_pem(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        certificate_id=hashlib.sha256(der).hexdigest(),
    )


def certificate_id(pem: bytes, source: str) -> str:
    """AWS IoT's certificate id of the PEM certificate ``pem`` (SHA-256 of its DER)."""
    return certificate_facts(pem, source).certificate_id


def amazon_root_ca1() -> bytes:
    """Amazon Root CA 1 as PEM, taken from ``certifi``'s bundle by its pinned fingerprint.

    The bundle is matched block by block on the SHA-256 of each certificate's DER, without
    parsing the others (some old roots in it make ``cryptography`` warn). Raises
    ``ProvisionError`` when certifi is missing or holds no such certificate.
    """
    bundle = Path(certifi.where())
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise ProvisionError(f"cannot read certifi's CA bundle {bundle}: {exc.strerror}") from exc
    for match in _PEM_BLOCK.finditer(data):
        der = base64.b64decode(b"".join(match.group(1).split()))
        if hashlib.sha256(der).hexdigest() == AMAZON_ROOT_CA1_SHA256:
            return match.group(0) + b"\n"
    raise ProvisionError(
        f"certifi's CA bundle {bundle} holds no Amazon Root CA 1 (SHA-256 "
        f"{AMAZON_ROOT_CA1_SHA256}): upgrade certifi (pip install -U certifi), or download "
        "https://www.amazontrust.com/repository/AmazonRootCA1.pem and check its fingerprint"
    )


def write_amazon_root_ca1(path: Path) -> None:
    """Write Amazon Root CA 1 (``amazon_root_ca1``) to ``path`` (0600; its folder is made
    0700 if missing). Raises ``ProvisionError``."""
    pem = amazon_root_ca1()
    try:
        private_dir(path.parent)
        write_atomic(path, pem)
    except OSError as exc:
        raise ProvisionError(f"cannot write {path}: {exc.strerror}") from exc
