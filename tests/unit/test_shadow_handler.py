"""ShadowHandler: one shadow document in, one decision and one report out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_app.clock import FakeClock
from edge_app.config import AppConfig, ConfigSnapshot, LastGoodStore, SnapshotHolder
from edge_app.domain import Event, ModelRef, Phase
from edge_app.errors import ModelError
from edge_app.remote import Kind, Outcome, ShadowHandler
from tests.unit.test_remote_overlay import MODELS, local_config


class RecordingApplier:
    """The ``Applier`` seam over a snapshot holder; models in ``broken`` fail to load."""

    def __init__(self, config: AppConfig, broken: frozenset[str] = frozenset()) -> None:
        self.holder = SnapshotHolder(ConfigSnapshot.of(config, "file", None))
        self.broken = broken
        self.applied: list[int] = []

    def current(self) -> ConfigSnapshot:
        return self.holder.current

    def model(self) -> ModelRef:
        return ModelRef(self.holder.current.config.detector.model, "0" * 12)

    def apply(self, config: AppConfig, remote_version: int) -> ConfigSnapshot:
        if config.detector.model in self.broken:
            raise ModelError(f"model {config.detector.model} failed its test run")
        snapshot = ConfigSnapshot.of(config, "remote", remote_version)
        self.holder.swap(snapshot)
        self.applied.append(remote_version)
        return snapshot


def make(
    tmp: Path, broken: frozenset[str] = frozenset()
) -> tuple[ShadowHandler, RecordingApplier, list[Event]]:
    local = local_config(tmp)
    applier = RecordingApplier(local, broken)
    audit: list[Event] = []
    handler = ShadowHandler(
        local, applier, LastGoodStore(tmp), models=MODELS, clock=FakeClock(), audit=audit.append
    )
    return handler, applier, audit


def delta(version: int, state: dict[str, Any]) -> bytes:
    return json.dumps({"state": state, "version": version, "timestamp": 1}).encode()


def test_valid_delta_applies_persists_audits_and_reports(tmp_path: Path) -> None:
    handler, applier, audit = make(tmp_path)
    outcome = handler.handle("delta", delta(7, {"detector": {"score_threshold": 0.9}}))
    assert outcome.status == "applied"
    assert applier.current().config.detector.score_threshold == 0.9
    assert applier.current().config.version == 7
    assert outcome.report is not None
    reported = outcome.report["state"]["reported"]
    assert reported["config"]["version"] == 7
    assert reported["config"]["digest"] == applier.current().digest
    assert reported["detector"] == {"score_threshold": 0.9}  # echoed: the delta empties
    stored = json.loads((tmp_path / "remote-config.json").read_text())
    assert stored["version"] == 7
    assert [(e.rule, e.phase, e.label) for e in audit] == [("config", Phase.UPDATE, "applied")]
    assert audit[0].to_json()["config"]["version"] == 7


def test_deltas_accumulate_and_get_replaces(tmp_path: Path) -> None:
    handler, applier, _ = make(tmp_path)
    handler.handle("delta", delta(1, {"detector": {"score_threshold": 0.9}}))
    handler.handle("delta", delta(2, {"cameras": {"yard": {"fps": 2}}}))
    config = applier.current().config
    assert (config.detector.score_threshold, config.cameras[0].fps) == (0.9, 2)
    doc = {"state": {"desired": {"cameras": {"yard": {"fps": 3}}}, "reported": {}}, "version": 5}
    assert handler.handle("get", json.dumps(doc).encode()).status == "applied"
    config = applier.current().config
    assert (config.detector.score_threshold, config.cameras[0].fps) == (0.5, 3)


def test_invalid_and_forbidden_changes_are_rejected_and_nothing_changes(tmp_path: Path) -> None:
    handler, applier, audit = make(tmp_path)
    before = applier.current()
    outcome = handler.handle(
        "delta", delta(3, {"uplink": {"host": "evil"}, "detector": {"score_threshold": 7}})
    )
    assert outcome.status == "rejected"
    assert applier.current() is before
    assert not (tmp_path / "remote-config.json").exists()
    assert outcome.report is not None
    report = outcome.report["state"]["reported"]["config"]
    assert report["status"] == "rejected"
    assert report["rejected_version"] == 3
    assert {e["field"] for e in report["errors"]} == {"uplink.host", "detector.score_threshold"}
    assert audit[-1].label == "rejected"
    oversized = handler.handle("delta", b'{"state": {"x": "' + b"a" * 9000 + b'"}, "version": 4}')
    assert oversized.status == "rejected"
    assert "8192" in oversized.errors[0].message
    assert applier.current() is before


def test_duplicate_and_out_of_order_deltas_are_stale(tmp_path: Path) -> None:
    handler, applier, _ = make(tmp_path)
    assert (
        handler.handle("delta", delta(10, {"detector": {"score_threshold": 0.6}})).status
        == "applied"
    )
    duplicate = handler.handle("delta", delta(10, {"detector": {"score_threshold": 0.6}}))
    older = handler.handle("delta", delta(9, {"detector": {"score_threshold": 0.3}}))
    assert (duplicate.status, older.status) == ("stale", "stale")
    assert duplicate.report is None
    assert applier.applied == [10]
    assert applier.current().config.detector.score_threshold == 0.6
    assert (
        handler.handle("delta", delta(11, {"detector": {"score_threshold": 0.4}})).status
        == "applied"
    )


def test_model_that_fails_to_load_is_rejected_with_the_model_field(tmp_path: Path) -> None:
    handler, applier, _ = make(tmp_path, broken=frozenset({"ssd_mobilenet_v1_coco"}))
    outcome = handler.handle("delta", delta(2, {"detector": {"model": "ssd_mobilenet_v1_coco"}}))
    assert outcome.status == "rejected"
    assert [e.path for e in outcome.errors] == ["detector.model"]
    assert applier.current().config.detector.model == "ssd_mobilenet_v2_coco"
    # the rejected desired state is not merged into what later deltas build on
    later = handler.handle("delta", delta(3, {"detector": {"score_threshold": 0.55}}))
    assert later.status == "applied"
    assert applier.current().config.detector.model == "ssd_mobilenet_v2_coco"


def test_get_that_changes_nothing_swaps_nothing(tmp_path: Path) -> None:
    handler, applier, audit = make(tmp_path)
    handler.handle("delta", delta(3, {"detector": {"score_threshold": 0.8}}))
    running = applier.current()
    report = handler.handle("delta", delta(3, {}))  # stale
    desired = {"detector": {"score_threshold": 0.8}}
    doc: dict[str, Any] = {
        "state": {"desired": desired, "reported": {"config": {"digest": running.digest}}},
        "version": 9,
    }
    again = handler.handle("get", json.dumps(doc).encode())
    assert (report.status, again.status, again.report) == ("stale", "unchanged", None)
    assert applier.current() is running
    assert len(audit) == 1
    doc["state"]["reported"] = {}  # the shadow lost our report: send it again
    resend = handler.handle("get", json.dumps({**doc, "version": 10}).encode())
    assert resend.status == "unchanged"
    assert resend.report is not None
    assert resend.report["state"]["reported"]["config"]["digest"] == running.digest


def test_restart_resumes_from_last_good_version(tmp_path: Path) -> None:
    handler, _, _ = make(tmp_path)
    handler.handle("delta", delta(4, {"detector": {"score_threshold": 0.65}}))
    store = LastGoodStore(tmp_path)
    last = store.load()
    assert last is not None
    local = local_config(tmp_path)
    again = ShadowHandler(
        local, RecordingApplier(local), store, models=MODELS, clock=FakeClock(), last=last
    )
    assert again.last_version == 4
    assert again.handle("delta", delta(4, {"detector": {"score_threshold": 0.1}})).status == "stale"


# -- property: whatever arrives, the handler answers and never crashes ------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "detector",
        "cameras",
        "rules",
        "uplink",
        "device",
        "score_threshold",
        "model",
        "yard",
        "fps",
        "zones",
        "batch",
        "max_events",
        "host",
        "tls",
        "polygon",
        "name",
        "labels",
    ]
)
_shaped = st.recursive(
    _json, lambda children: st.dictionaries(_keys, children, max_size=4), max_leaves=25
)
_documents = st.fixed_dictionaries(
    {"state": _shaped},
    optional={"version": st.integers(-3, 10**6) | _json, "clientToken": _json},
).map(lambda d: json.dumps(d).encode())
_payloads = st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()) | _documents


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ShadowHandler, RecordingApplier, list[Event]]:
    """One handler for every example, so state (versions, desired) carries across them."""
    return make(tmp_path_factory.mktemp("shadow-prop"))


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["get", "delta"]), payload=_payloads)
def test_any_payload_is_answered_without_crashing(
    kind: Kind, payload: bytes, shared: tuple[ShadowHandler, RecordingApplier, list[Event]]
) -> None:
    handler, applier, audit = shared
    before = applier.current()
    seen = handler.last_version
    outcome = handler.handle(kind, payload)
    assert isinstance(outcome, Outcome)
    if outcome.status == "stale":
        assert outcome.report is None
        assert outcome.version is not None
        assert outcome.version <= seen
    elif outcome.status == "unchanged":
        assert applier.current() is before
    else:
        assert outcome.report is not None
        json.dumps(outcome.report)  # publishable
        assert audit[-1].label == outcome.status
    if outcome.status != "applied":
        assert applier.current() is before
