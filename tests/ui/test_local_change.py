"""A change made on the device (the zone editor) takes the remote change's path: validated,
applied, persisted, audited with ``origin: local``, and written into the shadow's desired and
reported state, also when it is made while the link is down."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from edge_app.clock import FakeClock
from edge_app.config import LastGoodStore
from edge_app.domain import Event
from edge_app.remote import ShadowClient, ShadowHandler
from edge_app.uplink import InMemoryTransport
from tests.config.test_remote_overlay import MODELS, local_config
from tests.factories import wait_until
from tests.fakes import RecordingApplier

DOOR = {"cameras": {"yard": {"zones": [{"name": "gate", "polygon": [[0, 0], [0.5, 0], [0.5, 1]]}]}}}


def parts(tmp: Path) -> tuple[ShadowHandler, RecordingApplier, list[Event]]:
    local = local_config(tmp)
    applier = RecordingApplier(local)
    audit: list[Event] = []
    handler = ShadowHandler(
        local, applier, LastGoodStore(tmp), models=MODELS, clock=FakeClock(), audit=audit.append
    )
    return handler, applier, audit


def test_a_local_change_is_applied_persisted_audited_and_reported_as_desired(
    tmp_path: Path,
) -> None:
    handler, applier, audit = parts(tmp_path)
    outcome = handler.handle_local(DOOR)
    assert outcome.status == "applied"
    zone = applier.current().config.cameras[0].zones[0]
    assert zone.polygon[1] == (0.5, 0.0)
    assert json.loads((tmp_path / "remote-config.json").read_text())["desired"] == DOOR
    assert [e.to_json()["config"]["origin"] for e in audit] == ["local"]
    assert outcome.report is not None
    state = outcome.report["state"]
    assert state["desired"] == DOOR  # so the shadow sends no delta undoing it
    assert state["reported"]["cameras"] == DOOR["cameras"]
    assert state["reported"]["config"]["digest"] == applier.current().digest
    # a later remote delta merges with it instead of dropping it
    later = {"detector": {"score_threshold": 0.7}}
    doc = json.dumps({"state": later, "version": 3, "timestamp": 1}).encode()
    assert handler.handle("delta", doc).status == "applied"
    assert applier.current().config.cameras[0].zones[0].polygon[1] == (0.5, 0.0)


def test_an_invalid_local_change_is_refused_audited_and_not_reported(tmp_path: Path) -> None:
    handler, applier, audit = parts(tmp_path)
    before = applier.current().digest
    bad = {"cameras": {"yard": {"zones": [{"name": "gate", "polygon": [[0, 0], [2, 0], [1, 1]]}]}}}
    outcome = handler.handle_local(bad)
    assert outcome.status == "rejected"
    assert outcome.report is None
    assert any("cameras.yard.zones.0.polygon" in str(e) for e in outcome.errors)
    assert applier.current().digest == before
    assert not (tmp_path / "remote-config.json").exists()
    assert [(e.label, e.to_json()["config"]["origin"]) for e in audit] == [("rejected", "local")]


def test_a_change_made_offline_reaches_the_shadow_before_the_next_get(tmp_path: Path) -> None:
    handler, applier, _ = parts(tmp_path)
    transport = InMemoryTransport(online=False)
    stop = threading.Event()
    client = ShadowClient(transport, handler, "cam-1", stop=stop)
    client.attach()
    transport.connect()
    thread = threading.Thread(target=client.run)
    thread.start()
    try:
        assert client.local_change(DOOR, 5.0).status == "applied"
        assert transport.published == []  # nothing could be sent
        transport.set_online(True)
        assert wait_until(lambda: len(transport.published) >= 2)
    finally:
        stop.set()
        thread.join()
    first, second = transport.published[:2]
    assert first.topic == client.topics.update
    assert json.loads(first.payload)["state"]["desired"] == DOOR
    assert second.topic == client.topics.get
    assert applier.current().config.cameras[0].zones[0].polygon[1] == (0.5, 0.0)
