"""Configuration: pydantic schema and YAML loading."""

from edge_app.config.holder import ConfigSnapshot, SnapshotHolder
from edge_app.config.lastgood import LAST_GOOD_FILE, LastGood, LastGoodStore, effective_config
from edge_app.config.loader import load_config, parse_config
from edge_app.config.remote import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    REMOTE_FIELDS,
    RemoteOverlay,
    apply_overlay,
    config_digest,
    merge_delta,
    parse_payload,
    validate_overlay,
)
from edge_app.config.schema import (
    AppConfig,
    CameraConfig,
    DetectorConfig,
    FileSourceConfig,
    ImageDirSourceConfig,
    MotionConfig,
    RuleConfig,
    SourceConfig,
    TlsConfig,
    UplinkConfig,
    UrlSourceConfig,
    UsbSourceConfig,
    ZoneConfig,
)

__all__ = [
    "LAST_GOOD_FILE",
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "REMOTE_FIELDS",
    "AppConfig",
    "CameraConfig",
    "ConfigSnapshot",
    "DetectorConfig",
    "FileSourceConfig",
    "ImageDirSourceConfig",
    "LastGood",
    "LastGoodStore",
    "MotionConfig",
    "RemoteOverlay",
    "RuleConfig",
    "SnapshotHolder",
    "SourceConfig",
    "TlsConfig",
    "UplinkConfig",
    "UrlSourceConfig",
    "UsbSourceConfig",
    "ZoneConfig",
    "apply_overlay",
    "config_digest",
    "effective_config",
    "load_config",
    "merge_delta",
    "parse_config",
    "parse_payload",
    "validate_overlay",
]
