"""Delivery of stored events over MQTT: transports, batch payloads, backoff, the drain loop
and its side lanes (snapshots, metrics)."""

from edge_app.uplink.backoff import Backoff
from edge_app.uplink.batcher import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    SCHEMA,
    decode_batch,
    encode_batch,
    envelope_bytes,
)
from edge_app.uplink.compression import (
    CODEC_NAMES,
    CONTENT_TYPE_JSON,
    MAX_DECODED_BYTES,
    Codec,
    codec,
    decode_payload,
)
from edge_app.uplink.drain import MALFORMED_REASON_CODES, DrainLoop, DrainStats
from edge_app.uplink.lanes import LanePublish, LaneSender, StoredLaneSender
from edge_app.uplink.mqtt import MqttTransport, status_payload, stop_network_loop, tls_context
from edge_app.uplink.packing import Outgoing, Packer
from edge_app.uplink.ratelimit import (
    IOT_CORE_MAX_BYTES_PER_S,
    IOT_CORE_MAX_PUBLISHES_PER_S,
    RateLimiter,
)
from edge_app.uplink.snapshots import SnapshotSender, fit_jpeg, snapshot_row
from edge_app.uplink.transport import (
    ConnectionCallback,
    InMemoryTransport,
    MessageCallback,
    PublishedMessage,
    PublishHandle,
    Transport,
    topic_matches,
)

__all__ = [
    "CODEC_NAMES",
    "CONTENT_TYPE_JSON",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "IOT_CORE_MAX_BYTES_PER_S",
    "IOT_CORE_MAX_PUBLISHES_PER_S",
    "MALFORMED_REASON_CODES",
    "MAX_DECODED_BYTES",
    "SCHEMA",
    "Backoff",
    "Codec",
    "ConnectionCallback",
    "DrainLoop",
    "DrainStats",
    "InMemoryTransport",
    "LanePublish",
    "LaneSender",
    "MessageCallback",
    "MqttTransport",
    "Outgoing",
    "Packer",
    "PublishHandle",
    "PublishedMessage",
    "RateLimiter",
    "SnapshotSender",
    "StoredLaneSender",
    "Transport",
    "codec",
    "decode_batch",
    "decode_payload",
    "encode_batch",
    "envelope_bytes",
    "fit_jpeg",
    "snapshot_row",
    "status_payload",
    "stop_network_loop",
    "tls_context",
    "topic_matches",
]
