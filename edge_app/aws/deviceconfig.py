"""The starting config file ``edge-app aws provision`` writes beside the device's credentials.

It holds what provisioning knows (thing name, IoT endpoint, region, the three TLS files by
relative path, so the folder can be moved as a whole) and one placeholder camera to replace.
It is validated with the real schema before it is written, so it always loads.
"""

from __future__ import annotations

__all__ = ["render_device_config"]

import json
from pathlib import Path

from edge_app.aws.record import CA_FILE, CERT_FILE, KEY_FILE
from edge_app.config.loader import parse_config, read_yaml

_TEMPLATE = """\
# edge-app configuration of thing {thing_q}, written by `edge-app aws provision`.
# Relative paths are resolved against this file's folder. Replace the camera below with
# yours (see deploy/edge-app.example.yaml), then: edge-app aws check --config {name}
version: 1
device:
  # the AWS IoT thing, and the MQTT client id the IoT policy allows
  thing_name: {thing_q}
  # outbox, snapshots and clips (created 0700, files 0600)
  data_dir: data
cameras:
  # a placeholder (/dev/video0): replace it with your camera
  - name: cam
    source: {{type: usb, index: 0}}
uplink:
  # this account's endpoint: aws iot describe-endpoint --endpoint-type iot:Data-ATS
  host: {endpoint_q}
  port: {port}
  tls:
    # {ca_note}
    ca: {ca}
    # signed by AWS IoT from this device's certificate signing request
    cert: {cert}
    # made on this device and never sent anywhere (mode 0600)
    key: {key}
aws:
  region: {region_q}
"""


def render_device_config(
    folder: Path,
    name: str,
    *,
    thing: str,
    endpoint: str,
    region: str,
    port: int = 8883,
    ca: Path | None = None,
) -> str:
    """The YAML text of ``folder/name`` for ``thing`` on ``endpoint:port`` in ``region``;
    ``ca`` is the broker's CA file (default: Amazon Root CA 1 beside the config).

    Values are written as JSON strings (valid YAML), so a thing named ``1`` or ``yes`` stays a
    string. Raises ``ConfigError`` if the result does not validate (a bug, or a value the
    schema refuses).
    """
    text = _TEMPLATE.format(
        thing_q=json.dumps(thing),
        endpoint_q=json.dumps(endpoint),
        region_q=json.dumps(region),
        name=name,
        port=port,
        ca=json.dumps(str(ca)) if ca is not None else CA_FILE,
        ca_note="the CA of the broker's certificate"
        if ca is not None
        else "Amazon Root CA 1 (from certifi, fingerprint checked)",
        cert=CERT_FILE,
        key=KEY_FILE,
    )
    source = str(folder / name)
    parse_config(read_yaml(text.encode(), source), source, folder)
    return text
