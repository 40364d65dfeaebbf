"""boto3 clients for the CloudWatch sinks (the ``[aws]`` extra).

Credentials come from boto3's standard chain (environment, shared files, instance or
container role). On a device, prefer the AWS IoT credentials provider: the device's X.509
certificate is exchanged for temporary credentials of an IAM role alias, so no long-lived keys
are stored (see README, "Metrics and health"). ``iot_credentials`` implements that exchange.
"""

from __future__ import annotations

__all__ = ["aws_client", "iot_credentials"]

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

from edge_app.errors import TelemetryError


def iot_credentials(
    endpoint: str, role_alias: str, thing: str, *, cert: Path, key: Path, ca: Path
) -> dict[str, str]:
    """Temporary credentials from the AWS IoT credentials provider (``endpoint`` is the
    account's ``iot:CredentialProvider`` host): ``accessKeyId``, ``secretAccessKey``,
    ``sessionToken``, ``expiration``. Raises ``TelemetryError`` (never with key contents)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    request = urllib.request.Request(
        f"https://{endpoint}/role-aliases/{role_alias}/credentials",
        headers={"x-amzn-iot-thingname": thing},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            doc: dict[str, Any] = json.load(response)
    except (OSError, ValueError) as exc:
        raise TelemetryError(
            f"AWS IoT credentials provider {endpoint} refused role alias {role_alias!r}: {exc}; "
            "check the role alias, the certificate's policy (iot:AssumeRoleWithCertificate)"
        ) from exc
    return {k: str(v) for k, v in doc["credentials"].items()}


def aws_client(
    service: str, *, region: str, endpoint_url: str | None = None, **credentials: str
) -> Any:
    """A boto3 client for ``service`` ("cloudwatch", "logs"); ``credentials`` (optional)
    are ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token``."""
    try:
        import boto3  # noqa: PLC0415  (optional [aws] extra, loaded only when configured)
    except ImportError as exc:
        raise TelemetryError(
            "the CloudWatch sinks need boto3: pip install 'edge-app[aws]'"
        ) from exc
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, **credentials)
