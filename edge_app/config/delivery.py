"""Storing and delivering: outbox, MQTT uplink, AWS sinks, metrics, logs, health."""

from __future__ import annotations

__all__ = [
    "AwsConfig",
    "BatchConfig",
    "CloudWatchLogsConfig",
    "EncryptionConfig",
    "HealthConfig",
    "MetricsConfig",
    "OutboxConfig",
    "ReconnectConfig",
    "TlsConfig",
    "UplinkConfig",
    "is_loopback",
]

import ipaddress
from pathlib import PurePath
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from edge_app.atrest import looks_like_key
from edge_app.config.base import NAME, FilePath, Model, MqttText, Url

_PREFIX_LEVELS = 6  # AWS IoT Core: at most 7 "/" per topic; edge-app appends two more levels


def _topic_prefix_ok(prefix: str) -> str:
    """``prefix`` if it makes valid publish topics (wildcards are refused by ``MqttText``)."""
    levels = prefix.split("/")
    if "" in levels:
        raise ValueError(f"{prefix!r} has an empty level: no leading or trailing '/' and no '//'")
    if prefix.startswith("$"):
        raise ValueError(
            f"{prefix!r} starts with '$': such topics belong to the broker ($aws, $SYS)"
        )
    if "{" in prefix.replace("{thing}", "") or "}" in prefix.replace("{thing}", ""):
        raise ValueError(f"{prefix!r}: the only placeholder is {{thing}}; no other braces")
    if len(levels) > _PREFIX_LEVELS:
        raise ValueError(
            f"{prefix!r} has {len(levels)} levels; at most {_PREFIX_LEVELS} (AWS IoT Core allows "
            "7 '/' in a topic and edge-app appends /snapshots/<event id>)"
        )
    return prefix


TopicPrefix = Annotated[MqttText, AfterValidator(_topic_prefix_ok)]


class OutboxConfig(Model):
    path: FilePath | None = Field(None, description="SQLite file; default: <data_dir>/outbox.db.")
    max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, description="Largest size of stored events, in bytes."
    )
    max_age_days: float = Field(
        14.0, gt=0, description="Undelivered events older than this are dropped and counted."
    )


def _refuse_key_text(value: object) -> object:
    # The key pasted where its file's path belongs would be shown in every message that names
    # the path ("cannot read the key file ..."); the message never repeats the value.
    if isinstance(value, str | PurePath) and looks_like_key(str(value)):
        raise ValueError(
            "holds a key itself, not the path of a key file: save it in a file (chmod 600, or "
            "make a new one with `edge-app keys generate FILE`) and give that file's path here"
        )
    return value


KeyFilePath = Annotated[FilePath, BeforeValidator(_refuse_key_text)]
"""A key file's path: refuses PEM text like every path, and the key's own base64 text."""


class EncryptionConfig(Model):
    enabled: bool = Field(
        False,
        description="Encrypt what is stored from now on (AES-256-GCM; needs the "
        "edge-app[encryption] extra): event bodies in the outbox, snapshot and clip files "
        "(<name>.enc). Off: new items are stored in clear; a key, if given, still reads "
        "the encrypted ones.",
    )
    key_file: KeyFilePath | None = Field(
        None,
        description="Path of the key file holding the 32-byte key, base64 or raw (`edge-app "
        "keys generate FILE`); the file is refused if group or others may access it (chmod "
        "600), and so is the key's own text (or PEM) given here instead of a path. Local "
        "only; the key is never logged or shown.",
    )
    credential: str | None = Field(
        None,
        pattern=NAME,
        description="Instead of key_file: the name of a systemd credential holding the key "
        "(LoadCredential=NAME:/path in the unit), read from $CREDENTIALS_DIRECTORY/NAME.",
    )

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if self.key_file is not None and self.credential is not None:
            raise ValueError("set encryption.key_file or encryption.credential, not both")
        if self.enabled and self.key_file is None and self.credential is None:
            raise ValueError(
                "encryption.enabled needs a key: encryption.key_file (make one with "
                "`edge-app keys generate FILE`) or encryption.credential"
            )
        return self


class TlsConfig(Model):
    ca: FilePath = Field(
        description="Path of the CA certificate file (PEM) that signed the broker's certificate."
    )
    cert: FilePath = Field(description="Path of this device's client certificate file (PEM).")
    key: FilePath = Field(
        description="Path of this device's private key file (PEM, mode 0600); the file's path, "
        "never the key text itself (refused). Never logged."
    )


class BatchConfig(Model):
    max_events: int = Field(500, ge=1, le=10_000, description="Most events in one publish.")
    max_bytes: int = Field(
        128 * 1024, ge=1024, le=128 * 1024, description="Largest batch payload (IoT Core: 128 KB)."
    )
    max_wait_s: float = Field(
        0.5, ge=0, le=60, description="How long to wait for more events before a partial batch."
    )


class ReconnectConfig(Model):
    min_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay, seconds.")
    max_s: float = Field(
        30.0, gt=0, le=3600, description="Cap of the exponential backoff, seconds."
    )


class UplinkConfig(Model):
    enabled: bool = Field(True, description="Deliver events over MQTT; off: store only.")
    host: str = Field("localhost", description="MQTT broker host (AWS IoT Core endpoint).")
    port: int = Field(8883, ge=1, le=65535, description="MQTT broker port.")
    tls: TlsConfig | None = Field(
        None,
        description="Mutual TLS files (AWS IoT Core: port 8883); required unless "
        "insecure_plaintext is true.",
    )
    insecure_plaintext: bool = Field(
        False,
        description="Allow MQTT over plain TCP without uplink.tls: the thing name and every "
        "event cross the network readable and unauthenticated. Only for a broker on a trusted "
        "test network; a warning is logged at start. Never settable remotely.",
    )
    client_id: MqttText | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="MQTT client id (at most 128 characters, no `+`, `#` or control "
        "characters); default: the thing name.",
    )
    topic_prefix: TopicPrefix = Field(
        "edge-app/{thing}",
        description="Topic prefix; `{thing}` is the thing name (the only placeholder). Levels "
        "are separated by `/`: none may be empty, the first may not start with `$` (broker "
        "topics) and at most 6 levels (AWS IoT Core allows 8 in a topic; edge-app appends "
        "/snapshots/<event id>). No `+`, `#` or control characters.",
    )
    keepalive_s: int = Field(30, ge=5, le=1200, description="MQTT keepalive, seconds.")
    inflight: int = Field(20, ge=1, le=100, description="Most unacknowledged QoS 1 publishes.")
    max_publishes_per_s: int = Field(
        100, ge=1, le=100, description="Publish rate cap (AWS IoT Core: 100/s per connection)."
    )
    max_bytes_per_s: int = Field(
        524_288,
        ge=1024,
        le=524_288,
        description="Payload byte rate cap, bytes/s (AWS IoT Core: 512 KB/s per connection).",
    )
    snapshot_lane_rows: int = Field(
        1000,
        ge=0,
        description="Event JPEGs queued for upload on {prefix}/snapshots/{event_id}, at most "
        "this many (oldest dropped first); 0: do not upload snapshots.",
    )
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batching of events.")
    compression: Literal["none", "gzip", "zlib", "zstd"] = Field(
        "none",
        description="Compress events batches: none, gzip or zlib (standard library) or zstd "
        "(pip install 'edge-app[zstd]'). Marked with the MQTT 5 content type "
        "application/json+<codec> (uncompressed: application/json); batch.max_bytes and the "
        "byte rate cap then count compressed bytes, so a batch carries several times more "
        "events. Every consumer must decode it (the Lambda in deploy/lambda and `python -m "
        "simulator cloud` do). Local file only.",
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Reconnect backoff."
    )
    flush_timeout_s: float = Field(
        5.0, ge=0, le=300, description="On shutdown, how long to keep delivering stored events."
    )


class AwsConfig(Model):
    region: str = Field("us-east-1", description="AWS region of CloudWatch and CW Logs.")
    credentials: Literal["chain", "iot"] = Field(
        "chain",
        description="chain: boto3's standard chain; iot: the AWS IoT credentials provider "
        "with uplink.tls (no long-lived keys on the device).",
    )
    iot_endpoint: str | None = Field(
        None, description="`aws iot describe-endpoint --endpoint-type iot:CredentialProvider`."
    )
    role_alias: str | None = Field(None, description="IoT role alias of the IAM role to assume.")

    @model_validator(mode="after")
    def _iot_complete(self) -> Self:
        if self.credentials == "iot" and not (self.iot_endpoint and self.role_alias):
            raise ValueError("aws.credentials 'iot' needs aws.iot_endpoint and aws.role_alias")
        return self


class MetricsConfig(Model):
    enabled: bool = Field(True, description="Collect metrics and ship one-minute aggregates.")
    sink: Literal["mqtt", "cloudwatch", "file", "none"] = Field(
        "mqtt",
        description="mqtt: EMF on {prefix}/metrics (no AWS keys); cloudwatch: PutMetricData "
        "(boto3); file: EMF lines for the CloudWatch agent; none: keep them queued.",
    )
    namespace: str = Field("EdgeApp", min_length=1, max_length=255, description="CW namespace.")
    sample_s: float = Field(10.0, gt=0, le=60, description="Seconds between collector samples.")
    period_s: float = Field(
        60.0, gt=0, le=3600, description="Aggregation period, seconds (CloudWatch: 60)."
    )
    file: FilePath | None = Field(None, description="EMF file for sink `file`; default data_dir.")
    endpoint_url: Url | None = Field(None, description="CloudWatch endpoint override (tests).")
    max_rows: int = Field(
        500_000, ge=1000, description="Most aggregates kept while offline (oldest dropped)."
    )


class CloudWatchLogsConfig(Model):
    enabled: bool = Field(False, description="Ship the app's warnings and errors to CW Logs.")
    group: str = Field("/edge-app", min_length=1, max_length=512, description="Log group.")
    stream: str | None = Field(None, description="Log stream; default: the thing name.")
    endpoint_url: Url | None = Field(None, description="CloudWatch Logs endpoint override.")


def is_loopback(host: str) -> bool:
    """True when binding ``host`` keeps a server off the network: ``localhost`` or a loopback
    IP. Any other name may resolve to a routable address, so it counts as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HealthConfig(Model):
    enabled: bool = Field(True, description="Serve /healthz, /metrics and /status over HTTP.")
    host: str = Field(
        "127.0.0.1",
        description="Bind address; anything but loopback (e.g. 0.0.0.0) exposes it on the "
        "network and then needs token_file or token_env.",
    )
    port: int = Field(8321, ge=0, le=65535, description="TCP port; 0: any free port.")
    token_file: FilePath | None = Field(
        None,
        description="File holding the bearer token (mode 0600, one line, at least 16 of "
        "A-Z a-z 0-9 - . _ ~ + /). Every request must then send `Authorization: Bearer "
        "<token>` or gets 401. Required (or token_env) when host is not loopback.",
    )
    token_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Name of an environment variable holding the bearer token, instead of "
        "token_file.",
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send its whole request, and again to read the "
        "answer; a slower connection is closed (slowloris).",
    )
    max_connections: int = Field(
        8,
        ge=1,
        le=256,
        description="Most connections served at once (one thread each). A connection beyond "
        "it displaces the oldest one that has not sent its request yet, else gets 503.",
    )
    camera_stale_s: float = Field(30.0, gt=0, description="No frame processed this long: stale.")
    detector_stuck_s: float = Field(30.0, gt=0, description="Inside detect this long: stuck.")
    disk_low_fraction: float = Field(0.05, ge=0, le=1, description="Free share below: low.")
    uplink_down_s: float = Field(300.0, gt=0, description="Uplink down this long: degraded.")
    outbox_full_fraction: float = Field(0.9, gt=0, le=1, description="Outbox fill: near full.")
    clock_unsynced_s: float = Field(
        600.0,
        gt=0,
        description="The OS says the wall clock is not synchronised this long: a "
        "clock_unsynced health event (the health state stays as it is).",
    )
    events: bool = Field(
        True,
        description="Raise health changes as events (rule `health`, label the kind: "
        "camera_stale, detector_stuck, disk_low, outbox_full, clock_unsynced; `start` when "
        "it begins, `end` when it clears), stored and delivered like any event.",
    )

    @property
    def exposed(self) -> bool:
        """True when ``host`` is not loopback: the endpoint is reachable from the network."""
        return not is_loopback(self.host)

    @model_validator(mode="after")
    def _token_when_exposed(self) -> Self:
        if self.token_file is not None and self.token_env is not None:
            raise ValueError("set health.token_file or health.token_env, not both")
        if self.exposed and self.token_file is None and self.token_env is None:
            raise ValueError(
                f"health.host {self.host!r} is not loopback, so /status and /metrics would be "
                "open to the network: set health.token_file (a 0600 file holding a bearer "
                "token, e.g. from `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                " or health.token_env (the name of an environment variable holding it), or "
                "bind health.host: 127.0.0.1"
            )
        return self
