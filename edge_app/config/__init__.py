"""Configuration: pydantic schema and YAML loading."""

from edge_app.config.loader import load_config, parse_config
from edge_app.config.schema import (
    AppConfig,
    AwsConfig,
    CameraConfig,
    CloudWatchLogsConfig,
    DetectorConfig,
    FileSourceConfig,
    HealthConfig,
    ImageDirSourceConfig,
    MetricsConfig,
    RuleConfig,
    SourceConfig,
    TlsConfig,
    UplinkConfig,
    UrlSourceConfig,
    UsbSourceConfig,
    ZoneConfig,
)

__all__ = [
    "AppConfig",
    "AwsConfig",
    "CameraConfig",
    "CloudWatchLogsConfig",
    "DetectorConfig",
    "FileSourceConfig",
    "HealthConfig",
    "ImageDirSourceConfig",
    "MetricsConfig",
    "RuleConfig",
    "SourceConfig",
    "TlsConfig",
    "UplinkConfig",
    "UrlSourceConfig",
    "UsbSourceConfig",
    "ZoneConfig",
    "load_config",
    "parse_config",
]
