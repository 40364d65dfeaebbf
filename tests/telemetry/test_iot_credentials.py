"""The AWS IoT credentials provider path: the device certificate buys temporary credentials
over mutual TLS, and boto3 signs CloudWatch requests with them (moto server as CloudWatch).
The provider is played by a small HTTPS server with the session's test PKI."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from edge_app.config import parse_config
from edge_app.errors import ConfigError, TelemetryError
from edge_app.telemetry import CloudWatchSink, IotCredentialsSource, MetricDatum, aws_client
from simulator.certs import Pki


class Provider:
    """``GET /role-aliases/{alias}/credentials`` over mutual TLS, like IoT's endpoint."""

    def __init__(self, pki: Pki) -> None:
        self.calls: list[tuple[str, str | None]] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.calls.append((self.path, self.headers.get("x-amzn-iot-thingname")))
                if self.path != "/role-aliases/edge-metrics/credentials":
                    self.send_error(403)
                    return
                expiry = datetime.now(UTC) + timedelta(hours=1)
                body = json.dumps(
                    {
                        "credentials": {
                            "accessKeyId": "ASIATESTIOTPROVIDER",
                            "secretAccessKey": "s3cr3t",
                            "sessionToken": "token",
                            "expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        }
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        context.load_verify_locations(str(pki.ca))
        context.verify_mode = ssl.CERT_REQUIRED  # the device must present its certificate
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(pki: Pki) -> Iterator[Provider]:
    server = Provider(pki)
    yield server
    server.close()


def source(
    provider: Provider, pki: Pki, *, alias: str = "edge-metrics", rogue: bool = False
) -> IotCredentialsSource:
    return IotCredentialsSource(
        provider.endpoint,
        alias,
        "cam-001",
        pki.rogue_cert if rogue else pki.client_cert,
        pki.rogue_key if rogue else pki.client_key,
        pki.ca,
    )


def datum() -> MetricDatum:
    ts = datetime.now(UTC).timestamp() - 120
    return MetricDatum("IotCredsProbe", (("device", "cam-001"),), ts, "Count", 1, 1.0, 1.0, 1.0)


def test_cloudwatch_requests_are_signed_with_provider_credentials(
    provider: Provider, pki: Pki, moto_endpoint: str
) -> None:
    client = aws_client(
        "cloudwatch", region="us-east-1", endpoint_url=moto_endpoint, iot=source(provider, pki)
    )
    assert provider.calls == []  # lazy: a device that boots offline does not fail here
    signed: list[str] = []
    client.meta.events.register(
        "before-send.cloudwatch.PutMetricData",
        lambda request, **_: signed.append(request.headers["Authorization"].decode()),
    )
    CloudWatchSink(client, "EdgeAppIot").send([datum()])
    assert provider.calls == [("/role-aliases/edge-metrics/credentials", "cam-001")]
    assert "Credential=ASIATESTIOTPROVIDER/" in signed[0]
    listed = client.list_metrics(Namespace="EdgeAppIot")["Metrics"]
    assert [m["MetricName"] for m in listed] == ["IotCredsProbe"]


@pytest.mark.parametrize(("alias", "rogue"), [("edge-metrics", True), ("unknown-alias", False)])
def test_refused_certificate_or_alias_is_a_clear_error(
    provider: Provider, pki: Pki, moto_endpoint: str, alias: str, rogue: bool
) -> None:
    client = aws_client(
        "cloudwatch",
        region="us-east-1",
        endpoint_url=moto_endpoint,
        iot=source(provider, pki, alias=alias, rogue=rogue),
    )
    with pytest.raises(TelemetryError, match="credentials provider") as info:
        CloudWatchSink(client, "EdgeAppIot").send([datum()])
    assert "BEGIN" not in str(info.value)  # never key or certificate contents


def test_config_demands_what_the_provider_needs() -> None:
    base: dict[str, Any] = {
        "device": {"thing_name": "cam-001"},
        "cameras": [{"name": "c", "source": {"type": "usb"}}],
    }
    with pytest.raises(ConfigError, match="iot_endpoint"):
        parse_config({**base, "aws": {"credentials": "iot"}})
    with pytest.raises(ConfigError, match=r"uplink\.tls"):
        parse_config(
            {**base, "aws": {"credentials": "iot", "iot_endpoint": "x", "role_alias": "r"}}
        )
