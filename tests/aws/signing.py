"""AWS IoT's CSR signing, where moto falls short.

moto's ``create_certificate_from_csr`` returns a certificate for a fresh random key, not for the
key in the CSR (moto 5.2: it keeps only the CSR's subject), so the device's key would never
match it. ``CsrSigningClient`` wraps a real boto3 ``iot`` client talking to moto and replaces
that one operation with what AWS IoT does: sign the CSR's own public key (here with a test
CA, so Mosquitto trusts the result; ``simulator.fleet.sign_csr``) and register the certificate
through moto's ``register_certificate_without_ca``. Every other operation is the real client's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulator.fleet import sign_csr


class CsrSigningClient:
    """``client`` (a boto3 iot client) with ``create_certificate_from_csr`` signed by the CA
    in ``ca_cert``/``ca_key`` (PEM files)."""

    def __init__(self, client: Any, ca_cert: Path, ca_key: Path) -> None:
        self._client = client
        self._ca_cert, self._ca_key = ca_cert, ca_key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_certificate_from_csr(
        self,
        *,
        certificateSigningRequest: str,  # noqa: N803  (boto3 names)
        setAsActive: bool = False,  # noqa: N803
    ) -> dict[str, Any]:
        pem = sign_csr(certificateSigningRequest, self._ca_cert, self._ca_key)
        status = "ACTIVE" if setAsActive else "INACTIVE"
        answer: dict[str, Any] = self._client.register_certificate_without_ca(
            certificatePem=pem, status=status
        )
        return {**answer, "certificatePem": pem}
