"""Exception tree of edge_app. Every error says what is wrong and what to do about it.

    EdgeAppError
     ├── ConfigError            invalid configuration file or payload (carries field errors)
     ├── SourceError            a frame source cannot be opened or read
     ├── ModelError             a model cannot be found, verified, loaded or decoded
     │    ├── ModelNotFoundError
     │    ├── ChecksumMismatchError
     │    └── UnsupportedModelError  (names the model's tensors)
     ├── OutboxError            the durable store failed
     ├── EncryptionError        encryption at rest: key missing, unreadable, insecure or wrong;
     │                          an item that does not decrypt (altered, or moved)
     ├── UplinkError            the MQTT side failed
     │    └── PublishRejectedError   broker answered a publish with a failure reason code
     ├── TelemetryError         a metrics or log sink failed (CloudWatch, EMF file, ...)
     └── ProvisionError         onboarding a device in AWS IoT failed (`edge-app aws ...`)

Third-party exceptions are wrapped with ``raise X(...) from exc`` at the boundary that sees them.

The tree is for operational failures: disk, network, bad user input or config, a bad model.
Misuse by a programmer (an argument out of range that the config schema would have refused,
a QoS of 2) raises ``ValueError`` or ``TypeError`` instead, so it is never handled as if the
device could recover from it.
"""

from __future__ import annotations

__all__ = [
    "ChecksumMismatchError",
    "ConfigError",
    "EdgeAppError",
    "EncryptionError",
    "FieldError",
    "ModelError",
    "ModelNotFoundError",
    "OutboxError",
    "ProvisionError",
    "PublishRejectedError",
    "SourceError",
    "TelemetryError",
    "UnsupportedModelError",
    "UplinkError",
]

from dataclasses import dataclass


class EdgeAppError(Exception):
    """Base of every error edge_app raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: dotted path into the document, and why it is invalid."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


class ConfigError(EdgeAppError):
    """A configuration document is invalid; ``errors`` lists every invalid field."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class SourceError(EdgeAppError):
    """A frame source cannot be opened or read."""


class ModelError(EdgeAppError):
    """A model cannot be found, verified, loaded or decoded."""


class ModelNotFoundError(ModelError):
    """The model file or manifest entry does not exist."""


class ChecksumMismatchError(ModelError):
    """A model file's sha256 differs from the manifest's."""


class UnsupportedModelError(ModelError):
    """The model's input/output tensors match no known decoder."""


class OutboxError(EdgeAppError):
    """The durable event store failed."""


class EncryptionError(EdgeAppError):
    """Encryption at rest failed: the key is missing, unreadable, readable by others or not the
    one the data was sealed with, or a sealed item does not decrypt (altered, or moved from
    another row or file). Messages name the key by its source and key id, never its bytes."""


class UplinkError(EdgeAppError):
    """The MQTT uplink failed."""


class PublishRejectedError(UplinkError):
    """The broker answered a QoS 1 publish with a failure reason code."""

    def __init__(self, reason: str, code: int) -> None:
        self.reason = reason
        self.code = code
        super().__init__(f"broker rejected publish: {reason} (reason code {code})")


class TelemetryError(EdgeAppError):
    """A metrics or log sink could not deliver; the data stays in its outbox lane."""


class ProvisionError(EdgeAppError):
    """Onboarding a device in AWS IoT (``edge-app aws provision``) or tearing it down failed:
    AWS refused a call, credentials are missing, or the local files are unusable. Messages
    name what was refused and what to do; what was created so far is recorded for a re-run
    or ``--teardown``."""
