"""``provision.json``: what ``edge-app aws provision`` created, so a re-run reuses it and
``--teardown`` removes exactly that.

The record sits in the output folder beside the files it describes and is rewritten (atomic,
0600) after every resource is created or removed, so an interrupted run leaves a record that
is true: the next run continues from it, a teardown removes what it lists. A resource that
existed before (a thing, group or policy someone else made) is recorded as *used*, never as
*created*, and a teardown leaves it alone.
"""

from __future__ import annotations

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "CONFIG_FILE",
    "KEY_FILE",
    "RECORD_FILE",
    "RECORD_SCHEMA",
    "ProvisionRecord",
    "load_record",
    "save_record",
]

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_app.errors import ProvisionError
from edge_app.files import read_nofollow, write_atomic

RECORD_SCHEMA = "edge-app/provision/1"
RECORD_FILE = "provision.json"
KEY_FILE = "private.pem.key"
"""The device's private key (made on the device, never sent anywhere)."""
CERT_FILE = "device.pem.crt"
CA_FILE = "AmazonRootCA1.pem"
CONFIG_FILE = "edge-app.yaml"
_RESOURCES = ("thing", "certificate", "policy", "group", "membership")


@dataclass(frozen=True, slots=True)
class ProvisionRecord:
    """One device's provisioning: names, ARNs, and which resources this tool created.

    ``created`` maps a resource kind (``thing``, ``certificate``, ``policy``, ``group``,
    ``membership`` of the thing in the group) to True when this tool created it.
    """

    thing: str
    region: str
    policy: str
    group: str | None = None
    certificate_arn: str | None = None
    certificate_id: str | None = None
    endpoint: str | None = None
    created: dict[str, bool] = field(default_factory=dict)

    def made(self, kind: str) -> bool:
        """True when this tool created the resource ``kind``."""
        return self.created.get(kind, False)


def load_record(folder: Path) -> ProvisionRecord | None:
    """The record in ``folder``, or None when there is none. ``ProvisionError`` when it
    cannot be read or is not a record this version writes."""
    path = folder / RECORD_FILE
    try:
        data = read_nofollow(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProvisionError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        record = _parse(json.loads(data))
    except (ValueError, TypeError) as exc:
        raise ProvisionError(
            f"{path} is damaged ({exc}): restore it, or remove the resources it lists by hand "
            "and delete it"
        ) from exc
    return record


def save_record(folder: Path, record: ProvisionRecord) -> None:
    """Write ``record`` to ``folder`` (atomic, 0600). Raises ``ProvisionError``."""
    doc: dict[str, Any] = {"schema": RECORD_SCHEMA, **asdict(record)}
    path = folder / RECORD_FILE
    try:
        write_atomic(path, (json.dumps(doc, indent=2) + "\n").encode())
    except OSError as exc:
        raise ProvisionError(f"cannot write {path}: {exc.strerror}") from exc


def _parse(doc: Any) -> ProvisionRecord:
    """The record in a parsed document; ``ValueError``/``TypeError`` saying what is wrong."""
    if not isinstance(doc, dict) or doc.pop("schema", None) != RECORD_SCHEMA:
        raise ValueError(f"not an {RECORD_SCHEMA} document")
    created = doc.get("created", {})
    if not isinstance(created, dict) or not set(created) <= set(_RESOURCES):
        raise ValueError(f"'created' must map some of {', '.join(_RESOURCES)} to true/false")
    record = ProvisionRecord(**doc)
    _check_types(record)
    return record


def _check_types(record: ProvisionRecord) -> None:
    for name in ("thing", "region", "policy"):
        if not isinstance(getattr(record, name), str):
            raise TypeError(f"{name} must be a string")
    for name in ("group", "certificate_arn", "certificate_id", "endpoint"):
        if not isinstance(getattr(record, name), str | None):
            raise TypeError(f"{name} must be a string or null")
    if not all(isinstance(v, bool) for v in record.created.values()):
        raise TypeError("the values of 'created' must be true or false")
