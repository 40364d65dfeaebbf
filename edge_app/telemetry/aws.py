"""boto3 clients for the CloudWatch sinks (the ``[aws]`` extra).

Credentials come from boto3's standard chain (environment, shared files, instance or
container role). On a device, prefer the AWS IoT credentials provider: the device's X.509
certificate is exchanged for temporary credentials of an IAM role alias, so no long-lived keys
are stored (see README, "Metrics and health"). ``iot_credentials`` implements that exchange.
"""

from __future__ import annotations

__all__ = ["IotCredentialsSource", "aws_client", "iot_credentials"]

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.errors import TelemetryError


def iot_credentials(
    endpoint: str, role_alias: str, thing: str, *, cert: Path, key: Path, ca: Path
) -> dict[str, str]:
    """Temporary credentials from the AWS IoT credentials provider (``endpoint`` is the
    account's ``iot:CredentialProvider`` host): ``accessKeyId``, ``secretAccessKey``,
    ``sessionToken``, ``expiration``. Raises ``TelemetryError`` (never with key contents)."""
    request = urllib.request.Request(
        f"https://{endpoint}/role-aliases/{role_alias}/credentials",
        headers={"x-amzn-iot-thingname": thing},
    )
    try:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            doc: dict[str, Any] = json.load(response)
        creds = doc["credentials"]
    except urllib.error.HTTPError as exc:
        exc.close()  # an HTTP error still holds the TLS connection open
        raise TelemetryError(
            f"AWS IoT credentials provider {endpoint} refused role alias {role_alias!r}: "
            f"HTTP {exc.code}; check aws.role_alias and that the certificate's policy allows "
            "iot:AssumeRoleWithCertificate"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TelemetryError(
            f"AWS IoT credentials provider {endpoint} refused role alias {role_alias!r}: {exc!r}; "
            "check aws.iot_endpoint, aws.role_alias and that the certificate's policy allows "
            "iot:AssumeRoleWithCertificate"
        ) from exc
    return {k: str(v) for k, v in creds.items()}


@dataclass(frozen=True, slots=True)
class IotCredentialsSource:
    """Where to get temporary credentials: the AWS IoT credentials provider ``endpoint``
    (host), the IAM ``role_alias``, the ``thing`` name and the device's mutual-TLS files."""

    endpoint: str
    role_alias: str
    thing: str
    cert: Path
    key: Path
    ca: Path

    def fetch(self) -> dict[str, str]:
        """botocore's refresh metadata (access_key, secret_key, token, expiry_time)."""
        creds = iot_credentials(
            self.endpoint, self.role_alias, self.thing, cert=self.cert, key=self.key, ca=self.ca
        )
        return {
            "access_key": creds["accessKeyId"],
            "secret_key": creds["secretAccessKey"],
            "token": creds["sessionToken"],
            "expiry_time": creds["expiration"],
        }


def aws_client(
    service: str,
    *,
    region: str,
    endpoint_url: str | None = None,
    iot: IotCredentialsSource | None = None,
    config: Any = None,
) -> Any:
    """A boto3 client for ``service`` ("cloudwatch", "logs"). Credentials: boto3's standard
    chain, or with ``iot`` the IoT credentials provider, asked lazily (the device may boot
    offline) and again before the temporary credentials expire."""
    try:
        import boto3  # noqa: PLC0415  (optional [aws] extra, loaded only when configured)
        from botocore.credentials import (  # noqa: PLC0415
            DeferredRefreshableCredentials,
        )
        from botocore.session import get_session  # noqa: PLC0415
    except ImportError as exc:
        raise TelemetryError(
            "the CloudWatch sinks need boto3: pip install 'edge-app[aws]'"
        ) from exc
    if iot is None:
        return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
    core = get_session()
    # botocore has no public setter for a session's credentials; this is the documented way
    # people plug in refreshable credentials (what boto3's own assume-role providers build)
    core._credentials = DeferredRefreshableCredentials(
        refresh_using=iot.fetch, method="iot-credentials-provider"
    )
    session = boto3.Session(botocore_session=core, region_name=region)
    return session.client(service, endpoint_url=endpoint_url, config=config)
