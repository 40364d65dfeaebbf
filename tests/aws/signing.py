"""AWS IoT's CSR signing, where moto falls short.

moto's ``create_certificate_from_csr`` returns a certificate for a fresh random key, not for the
key in the CSR (moto 5.2: it keeps only the CSR's subject), so the device's key would never
match it. ``CsrSigningClient`` wraps a real boto3 ``iot`` client talking to moto and replaces
that one operation with what AWS IoT does: sign the CSR's own public key (here with a test
CA, so Mosquitto trusts the result) and register the certificate ACTIVE, through moto's
``register_certificate_without_ca``. Every other operation is the real client's.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


class CsrSigningClient:
    """``client`` (a boto3 iot client) with ``create_certificate_from_csr`` signed by the CA
    in ``ca_cert``/``ca_key`` (PEM files). ``signed`` counts the CSRs signed."""

    def __init__(self, client: Any, ca_cert: Path, ca_key: Path) -> None:
        self._client = client
        self._ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        self._ca_key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
        self.signed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_certificate_from_csr(
        self,
        *,
        certificateSigningRequest: str,  # noqa: N803  (boto3 names)
        setAsActive: bool = False,  # noqa: N803
    ) -> dict[str, Any]:
        csr = x509.load_pem_x509_csr(certificateSigningRequest.encode())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self._ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .sign(self._ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        status = "ACTIVE" if setAsActive else "INACTIVE"
        answer: dict[str, Any] = self._client.register_certificate_without_ca(
            certificatePem=pem, status=status
        )
        self.signed += 1
        return {**answer, "certificatePem": pem}
