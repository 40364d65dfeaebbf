"""The configuration tree: one pydantic model, ``extra="forbid"``, every field described.

Relative paths in a file are resolved against the directory of that file (see ``loader``).
"""

from __future__ import annotations

__all__ = [
    "AppConfig",
    "AwsConfig",
    "BatchConfig",
    "CameraConfig",
    "ClipConfig",
    "CloudWatchLogsConfig",
    "DetectorConfig",
    "DeviceConfig",
    "EncryptionConfig",
    "FileSourceConfig",
    "HealthConfig",
    "ImageDirSourceConfig",
    "MetricsConfig",
    "ModelUpdatesConfig",
    "MotionConfig",
    "OutboxConfig",
    "ReconnectConfig",
    "RuleConfig",
    "ScheduleConfig",
    "SnapshotConfig",
    "SourceConfig",
    "TamperConfig",
    "TlsConfig",
    "TrackingConfig",
    "UiConfig",
    "UplinkConfig",
    "UrlSourceConfig",
    "UsbSourceConfig",
    "ZoneConfig",
    "is_loopback",
]


from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from edge_app.config.base import FieldCheckError, Model, refuse_repeats
from edge_app.config.cameras import (
    CameraConfig,
    ClipConfig,
    DeviceConfig,
    FileSourceConfig,
    ImageDirSourceConfig,
    MotionConfig,
    SnapshotConfig,
    SourceConfig,
    TamperConfig,
    UrlSourceConfig,
    UsbSourceConfig,
    ZoneConfig,
)
from edge_app.config.delivery import (
    AwsConfig,
    BatchConfig,
    CloudWatchLogsConfig,
    EncryptionConfig,
    HealthConfig,
    MetricsConfig,
    OutboxConfig,
    ReconnectConfig,
    TlsConfig,
    UplinkConfig,
    is_loopback,
)
from edge_app.config.detection import (
    DetectorConfig,
    RuleConfig,
    ScheduleConfig,
)
from edge_app.config.inspection import ANOMALY_LABEL
from edge_app.config.tracking import TrackingConfig
from edge_app.config.ui import UiConfig
from edge_app.config.updates import ModelUpdatesConfig

_MAX_TOPIC_BYTES = 256
"""Longest topic AWS IoT Core accepts, UTF-8 bytes."""
_LONGEST_SUFFIX = "/snapshots/" + "0" * 26  # {prefix}/snapshots/{event ULID}: the longest topic


class AppConfig(Model):
    """The whole configuration of one device."""

    version: int = Field(0, ge=0, description="Configuration version, carried in every event.")
    device: DeviceConfig = Field(description="Identity of this device.")
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras of this device.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Object detector.")
    rules: list[RuleConfig] = Field(default_factory=list, description="Rules that raise events.")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Durable event store.")
    encryption: EncryptionConfig = Field(
        default_factory=EncryptionConfig,
        description="Encryption at rest of stored events, snapshots and clips (local only).",
    )
    snapshots: SnapshotConfig = Field(
        default_factory=SnapshotConfig, description="Local retention of event snapshots."
    )
    uplink: UplinkConfig = Field(
        default_factory=UplinkConfig,
        validate_default=True,  # a file without an uplink section must pass _uplink_encrypted
        description="MQTT delivery.",
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Metrics and their sink."
    )
    aws: AwsConfig = Field(default_factory=AwsConfig, description="AWS access of the sinks.")
    cloudwatch_logs: CloudWatchLogsConfig = Field(
        default_factory=CloudWatchLogsConfig, description="Shipping of warnings/errors."
    )
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="Local health/metrics HTTP endpoint."
    )
    ui: UiConfig = Field(
        default_factory=UiConfig, description="Local status page served on the health endpoint."
    )
    model_updates: ModelUpdatesConfig = Field(
        default_factory=ModelUpdatesConfig,
        description="Over-the-air model updates: where from, caps and checks (local only).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level of log lines written to stderr."
    )

    @field_validator("uplink", mode="after")
    @classmethod
    def _uplink_encrypted(cls, uplink: UplinkConfig) -> UplinkConfig:
        # Checked here, not in UplinkConfig: its default (no section in the file) must fail
        # with a field error, and a default_factory cannot raise one.
        if uplink.tls is not None and uplink.insecure_plaintext:
            raise ValueError(
                "uplink.insecure_plaintext is true but uplink.tls is set: remove "
                "insecure_plaintext to use TLS, or tls to send in plain text"
            )
        if uplink.enabled and uplink.tls is None and not uplink.insecure_plaintext:
            raise ValueError(
                "uplink.tls is not set, so MQTT would travel in plain text (thing name and "
                "events readable and forgeable on the network): set uplink.tls.ca (the CA "
                "that signed the broker's certificate, e.g. AmazonRootCA1.pem), uplink.tls.cert "
                "and uplink.tls.key (this device's certificate and private key) and "
                "uplink.port: 8883; or uplink.enabled: false to store events only; or, for a "
                "test broker on a trusted network, uplink.insecure_plaintext: true"
            )
        return uplink

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        cams = {c.name: c for c in self.cameras}
        refuse_repeats((c.name for c in self.cameras), "camera", "cameras")
        refuse_repeats((r.name for r in self.rules), "rule", "rules")
        for i, rule in enumerate(self.rules):
            targets = [cams[rule.camera]] if rule.camera in cams else list(cams.values())
            if rule.camera is not None and rule.camera not in cams:
                raise FieldCheckError(
                    ["rules", i, "camera"], f"rule {rule.name!r}: no camera named {rule.camera!r}"
                )
            if rule.zone is not None:
                missing = [c.name for c in targets if rule.zone not in {z.name for z in c.zones}]
                if missing:
                    raise FieldCheckError(
                        ["rules", i, "zone"],
                        f"rule {rule.name!r}: zone {rule.zone!r} not on {missing}",
                    )
        for i, rule in enumerate(self.rules):
            watched = [c for c in self.cameras if rule.camera in (None, c.name)]
            if ANOMALY_LABEL in rule.labels and all(c.anomaly is None for c in watched):
                raise FieldCheckError(
                    ["rules", i, "labels"],
                    f"rule {rule.name!r} watches label {ANOMALY_LABEL!r}, but no camera it "
                    "applies to has an `anomaly` section",
                )
        names = {r.name for r in self.rules}
        for i, cam in enumerate(self.cameras):
            unknown = [n for n in (cam.classify.rules if cam.classify else []) if n not in names]
            if unknown:
                raise FieldCheckError(
                    ["cameras", i, "classify", "rules"], f"no rule named {unknown[0]!r}"
                )
        if self.aws.credentials == "iot" and self.uplink.tls is None:
            raise FieldCheckError(
                ["uplink", "tls"], "aws.credentials 'iot' needs uplink.tls (the device certificate)"
            )
        longest = len(self.topic_prefix.encode()) + len(_LONGEST_SUFFIX)
        if longest > _MAX_TOPIC_BYTES:
            raise FieldCheckError(
                ["uplink", "topic_prefix"],
                f"too long: with thing name {self.device.thing_name!r} the snapshot topics "
                f"are {longest} bytes; AWS IoT Core allows {_MAX_TOPIC_BYTES}",
            )
        return self

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.device.data_dir / "outbox.db"

    @property
    def snapshot_dir(self) -> Path:
        """``<data_dir>/snapshots``: ``<camera>/<YYYY-MM-DD>/<event id>.jpg`` and siblings."""
        return self.device.data_dir / "snapshots"

    @property
    def journal_path(self) -> Path:
        """The local page's event journal (``EventJournal``)."""
        return self.device.data_dir / "journal.db"

    def clip_dir(self, camera: str) -> Path:
        """``<data_dir>/clips/<camera>``: that camera's ``<event id>.mp4`` clips."""
        return self.device.data_dir / "clips" / camera

    @property
    def topic_prefix(self) -> str:
        return self.uplink.topic_prefix.replace("{thing}", self.device.thing_name)
