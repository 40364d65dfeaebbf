"""The events batch payload: schema fields, compact joining, size arithmetic, decoding."""

from __future__ import annotations

import json

import pytest

from edge_app.errors import UplinkError
from edge_app.uplink import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    SCHEMA,
    decode_batch,
    encode_batch,
    envelope_bytes,
)

BODIES = ['{"id":"A","seq":7}', '{"id":"B","seq":8,"label":"caf\\u00e9"}', '{"id":"C","seq":9}']


def test_payload_has_the_contract_fields_in_order() -> None:
    payload = encode_batch(
        "cam-001",
        "01JD0000000000000000000000",
        BODIES,
        {"door": {"low": 2}},
        first_seq=7,
        last_seq=9,
    )
    doc = json.loads(payload)
    assert list(doc) == [
        "schema",
        "device",
        "batch_id",
        "first_seq",
        "last_seq",
        "events",
        "dropped",
    ]
    assert doc["schema"] == SCHEMA == "edge-app/events/1"
    assert doc["device"] == "cam-001"
    assert doc["batch_id"] == "01JD0000000000000000000000"
    assert (doc["first_seq"], doc["last_seq"]) == (7, 9)
    assert [e["id"] for e in doc["events"]] == ["A", "B", "C"]
    assert doc["events"][1]["label"] == "café"
    assert doc["dropped"] == {"door": {"low": 2}}


def test_bodies_are_joined_verbatim_and_compactly() -> None:
    payload = encode_batch("d", "b", BODIES, {}, first_seq=7, last_seq=9).decode()
    assert ",".join(BODIES) in payload
    assert ": " not in payload
    assert ", " not in payload
    assert payload.endswith(',"dropped":{}}')


@pytest.mark.parametrize("count", [0, 1, 3])
def test_size_is_envelope_plus_bodies_plus_commas(count: int) -> None:
    bodies = BODIES[:count]
    dropped = {"zone": {"high": 1, "low": 12}}
    envelope = envelope_bytes("cam-001", "B1", dropped, first_seq=7, last_seq=9)
    payload = encode_batch("cam-001", "B1", bodies, dropped, first_seq=7, last_seq=9)
    assert len(payload) == envelope + sum(len(b) for b in bodies) + max(0, count - 1)


def test_drops_only_batch_has_null_seqs() -> None:
    doc = decode_batch(encode_batch("d", "b", [], {"r": {"low": 1}}, first_seq=None, last_seq=None))
    assert (doc["first_seq"], doc["last_seq"], doc["events"]) == (None, None, [])


def test_default_limit_is_iot_core_payload_limit() -> None:
    assert DEFAULT_MAX_PAYLOAD_BYTES == 128 * 1024


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"schema": "other/1"}', "schema is 'other/1'"),
        (b'{"schema": "edge-app/events/1", "device": "d"}', "lacks"),
    ],
)
def test_decode_rejects_malformed_batches(payload: bytes, message: str) -> None:
    with pytest.raises(UplinkError, match=message):
        decode_batch(payload)
