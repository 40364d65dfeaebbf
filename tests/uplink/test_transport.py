"""PublishHandle and the shipped InMemoryTransport (the unit tests' and demo's broker)."""

from __future__ import annotations

import pytest

from edge_app.errors import PublishRejectedError, UplinkError
from edge_app.uplink import InMemoryTransport, PublishHandle, topic_matches


def test_handle_reports_its_first_outcome_and_calls_back() -> None:
    handle = PublishHandle("t")
    seen: list[PublishHandle] = []
    handle.add_done_callback(seen.append)
    assert not handle.wait(0.0)
    with pytest.raises(UplinkError, match="no outcome yet"):
        _ = handle.result
    assert handle.set_result(None)
    assert not handle.set_result(UplinkError("late"))  # first outcome wins
    assert handle.wait(0.0)
    assert handle.ok
    assert handle.result is None
    assert seen == [handle]
    handle.add_done_callback(seen.append)  # already done: called at once
    assert seen == [handle, handle]


def test_publishing_while_offline_fails_at_once() -> None:
    transport = InMemoryTransport(online=False)
    transport.connect()
    assert not transport.is_connected
    handle = transport.publish("t", b"x")
    assert handle.done
    assert isinstance(handle.result, UplinkError)
    assert transport.published == []


def test_publish_records_messages_and_retained() -> None:
    transport = InMemoryTransport()
    transport.connect()
    assert transport.publish("a/status", b'{"state":"online"}', retain=True).ok
    assert transport.publish("a/events", b"1").ok
    assert [m.topic for m in transport.published] == ["a/status", "a/events"]
    assert transport.retained == {"a/status": b'{"state":"online"}'}


def test_fail_next_rejects_with_reason_code() -> None:
    transport = InMemoryTransport()
    transport.connect()
    transport.fail_next(2, reason_code=0x97)
    results = [transport.publish("t", bytes([i])).result for i in range(3)]
    assert isinstance(results[0], PublishRejectedError)
    assert isinstance(results[1], PublishRejectedError)
    assert results[0].code == 0x97
    assert results[2] is None
    assert [m.payload for m in transport.published] == [b"\x02"]
    assert len(transport.rejected) == 2


def test_held_acks_and_connection_loss() -> None:
    transport = InMemoryTransport(auto_ack=False)
    changes: list[bool] = []
    transport.on_connection_change(changes.append)
    transport.connect()
    first, second, third = (transport.publish("t", bytes([i])) for i in range(3))
    assert transport.pending == 3
    assert transport.ack_pending(1) == 1
    assert first.ok
    assert not second.done
    transport.set_online(False)
    # The broker got them, but their PUBACKs are lost with the connection.
    assert isinstance(second.result, UplinkError)
    assert isinstance(third.result, UplinkError)
    assert len(transport.published) == 3
    transport.set_online(True)
    transport.disconnect()
    assert changes == [True, False, True, False]


def test_invalid_qos_is_refused() -> None:
    transport = InMemoryTransport()
    with pytest.raises(ValueError, match="qos must be 0 or 1"):
        transport.publish("t", b"", qos=2)


@pytest.mark.parametrize(
    ("flt", "topic", "match"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a/b/c", True),
        ("#", "$aws/things/x", False),
        ("+/things/x", "$aws/things/x", False),
        ("$aws/things/+/shadow/name/+/get", "$aws/things/t/shadow/name/edge-config/get", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matches(flt: str, topic: str, match: bool) -> None:
    assert topic_matches(flt, topic) is match


def test_in_memory_subscribe_delivers_published_and_injected_messages() -> None:
    transport = InMemoryTransport()
    got: list[tuple[str, bytes]] = []
    transport.subscribe("dev/+/cmd", lambda t, p: got.append((t, p)))
    transport.connect()
    transport.publish("dev/1/cmd", b"a")
    transport.publish("dev/1/other", b"b")
    assert transport.inject("dev/2/cmd", b"c") == 1
    transport.set_online(False)
    assert transport.inject("dev/3/cmd", b"d") == 0
    assert got == [("dev/1/cmd", b"a"), ("dev/2/cmd", b"c")]
