"""ShadowHandler: one shadow document in, one decision and one report out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_app.clock import FakeClock
from edge_app.config import LastGood, LastGoodStore
from edge_app.domain import Event, Phase
from edge_app.remote import Kind, Outcome, ShadowHandler
from edge_app.remote.report import FIELD_MAX_BYTES, REASON_MAX_BYTES, REPORT_MAX_BYTES
from tests.config.test_remote_overlay import MODELS, local_config
from tests.fakes import RecordingApplier


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


# -- the version bar: only what is put in force moves it; deletion resets it ------------------

HUGE = 2**62  # a valid shadow version, far above any real one


def get_doc(version: int, desired: dict[str, Any], token: str | None = None) -> bytes:
    doc: dict[str, Any] = {"state": {"desired": desired}, "version": version}
    if token is not None:
        doc["clientToken"] = token
    return json.dumps(doc).encode()


def token_of(request: bytes) -> str:
    token: str = json.loads(request)["clientToken"]
    return token


@pytest.mark.parametrize(
    ("version", "state", "field"),
    [
        (HUGE, {"uplink": {"host": "evil.example"}}, "uplink.host"),
        (10**30, {"detector": {"score_threshold": 0.9}}, "version"),  # beyond 64 bits
        (HUGE, {"detector": {"model": "ssd_mobilenet_v1_coco"}}, "detector.model"),  # fails load
    ],
)
def test_a_rejected_message_never_moves_the_version_bar(
    tmp_path: Path, version: int, state: dict[str, Any], field: str
) -> None:
    handler, applier, _ = make(tmp_path, broken=frozenset({"ssd_mobilenet_v1_coco"}))
    assert handler.handle("delta", delta(3, {"detector": {"score_threshold": 0.6}})).status == (
        "applied"
    )
    rejected = handler.handle("delta", delta(version, state))
    assert rejected.status == "rejected"
    assert [e.path for e in rejected.errors] == [field]
    assert handler.last_version == 3
    # the next real change is decided on its merits, not frozen out as stale
    later = handler.handle("delta", delta(4, {"detector": {"score_threshold": 0.7}}))
    assert later.status == "applied"
    assert applier.current().config.detector.score_threshold == 0.7
    assert applier.current().config.version == 4


def test_a_huge_valid_version_holds_until_the_shadow_is_deleted(tmp_path: Path) -> None:
    handler, applier, _ = make(tmp_path)
    handler.handle("delta", delta(2, {"cameras": {"yard": {"fps": 2}}}))
    assert handler.handle("delta", delta(HUGE, {"detector": {"score_threshold": 0.9}})).status == (
        "applied"
    )
    assert LastGoodStore(tmp_path).load() == LastGood(
        {"cameras": {"yard": {"fps": 2}}, "detector": {"score_threshold": 0.9}},
        HUGE,
        applier.current().digest,
    )
    assert handler.handle("delta", delta(5, {"detector": {"score_threshold": 0.3}})).status == (
        "stale"
    )
    running = applier.current()
    handler.deleted(json.dumps({"version": HUGE + 3, "timestamp": 1}).encode())
    assert handler.last_version == -1
    assert applier.current() is running  # deletion alone changes nothing that runs
    # a re-created shadow starts at version 1; its desired state is laid on the local file as
    # a whole (the deleted shadow's desired document is gone, fps 2 with it)
    outcome = handler.handle("delta", delta(1, {"detector": {"score_threshold": 0.4}}))
    assert outcome.status == "applied"
    config = applier.current().config
    local_fps = local_config(tmp_path).cameras[0].fps
    assert (config.version, config.detector.score_threshold, config.cameras[0].fps) == (
        1,
        0.4,
        local_fps,
    )
    assert local_fps != 2
    assert outcome.report is not None
    assert outcome.report["state"]["reported"]["config"]["version"] == 1
    stored = LastGoodStore(tmp_path).load()
    assert stored is not None
    assert stored.version == 1


def test_the_same_settings_from_a_recreated_shadow_carry_its_version(tmp_path: Path) -> None:
    handler, applier, audit = make(tmp_path)
    handler.handle("delta", delta(40, {"detector": {"score_threshold": 0.9}}))
    handler.deleted(b'{"version": 41, "timestamp": 1}')
    again = handler.handle("delta", delta(1, {"detector": {"score_threshold": 0.9}}))
    # same settings, but what runs must say it is v1 of the new shadow, not v40 of the old
    assert again.status == "applied"
    assert applier.current().remote_version == 1
    assert again.report is not None
    assert again.report["state"]["reported"]["config"]["version"] == 1
    assert [a.label for a in audit] == ["applied", "applied"]


def restarted(tmp: Path) -> tuple[ShadowHandler, RecordingApplier]:
    """A handler booted the way the app boots: local file + last-good, bar from last-good."""
    store = LastGoodStore(tmp)
    local = local_config(tmp)
    last = store.load()
    assert last is not None
    applier = RecordingApplier(local)
    handler = ShadowHandler(local, applier, store, models=MODELS, clock=FakeClock(), last=last)
    return handler, applier


def test_restart_with_a_deleted_shadow_accepts_version_one_again(tmp_path: Path) -> None:
    handler, _, _ = make(tmp_path)
    handler.handle("delta", delta(HUGE, {"detector": {"score_threshold": 0.65}}))
    booted, applier = restarted(tmp_path)
    assert booted.last_version == HUGE
    assert booted.handle("delta", delta(1, {"detector": {"score_threshold": 0.2}})).status == (
        "stale"
    )
    token = token_of(booted.get_request())
    missing = {"code": 404, "message": "No shadow exists with name: 'edge-config'"}
    assert booted.get_rejected(json.dumps({**missing, "clientToken": token}).encode())
    assert booted.last_version == -1
    outcome = booted.handle("delta", delta(1, {"detector": {"score_threshold": 0.2}}))
    assert outcome.status == "applied"
    assert applier.current().config.version == 1
    stored = LastGoodStore(tmp_path).load()
    assert stored is not None
    assert (stored.version, stored.desired) == (1, {"detector": {"score_threshold": 0.2}})


def test_restart_with_a_recreated_shadow_applies_its_lower_version(tmp_path: Path) -> None:
    handler, _, _ = make(tmp_path)
    handler.handle("delta", delta(HUGE, {"detector": {"score_threshold": 0.65}}))
    booted, applier = restarted(tmp_path)
    desired = {"detector": {"score_threshold": 0.35}}
    # a get/accepted that answers no get of ours proves nothing: stale
    assert booted.handle("get", get_doc(3, desired, "someone-else")).status == "stale"
    # the answer to our get, sent at bar HUGE, shows v3: deleted and re-created meanwhile
    token = token_of(booted.get_request())
    outcome = booted.handle("get", get_doc(3, desired, token))
    assert outcome.status == "applied"
    assert applier.current().config.detector.score_threshold == 0.35
    assert booted.last_version == 3


def test_a_get_overtaken_by_a_delta_is_stale(tmp_path: Path) -> None:
    handler, applier, _ = make(tmp_path)
    handler.handle("delta", delta(10, {"detector": {"score_threshold": 0.6}}))
    token = token_of(handler.get_request())
    handler.handle("delta", delta(11, {"detector": {"score_threshold": 0.7}}))
    # answered at v10, arriving after v11: not below the bar it was sent at, so no reset
    late = handler.handle("get", get_doc(10, {"detector": {"score_threshold": 0.6}}, token))
    assert late.status == "stale"
    assert handler.last_version == 11
    assert applier.current().config.detector.score_threshold == 0.7


def test_only_a_timely_404_to_our_get_resets_the_bar(tmp_path: Path) -> None:
    handler, _, _ = make(tmp_path)
    handler.handle("delta", delta(5, {"detector": {"score_threshold": 0.6}}))
    token = token_of(handler.get_request())
    handler.handle("delta", delta(6, {"detector": {"score_threshold": 0.7}}))
    not_found = {"code": 404, "message": "No shadow exists with name: 'edge-config'"}
    # late: v6 was put in force after that get was sent, so the shadow exists
    assert not handler.get_rejected(json.dumps({**not_found, "clientToken": token}).encode())
    assert not handler.get_rejected(json.dumps({**not_found, "clientToken": "other"}).encode())
    assert not handler.get_rejected(json.dumps(not_found).encode())
    token = token_of(handler.get_request())
    refused = {"code": 429, "message": "Too many requests", "clientToken": token}
    for payload in (json.dumps(refused).encode(), b"\xff", b"[" * 100, b""):
        assert not handler.get_rejected(payload)
    assert handler.last_version == 6


# -- bounded reports: a rejection always fits the shadow and the event budget -----------------


def test_700_bad_keys_give_a_bounded_report_and_audit_event(tmp_path: Path) -> None:
    handler, _, audit = make(tmp_path)
    state = {f"k{i:03d}": 1 for i in range(700)}
    payload = json.dumps({"state": state, "version": 5}, separators=(",", ":")).encode()
    assert 6000 < len(payload) < 6500
    outcome = handler.handle("delta", payload)
    assert outcome.status == "rejected"
    assert len(outcome.errors) == 700  # the outcome keeps them all; what is sent is bounded
    assert outcome.report is not None
    sent = json.dumps(outcome.report, separators=(",", ":"))
    assert len(sent) <= REPORT_MAX_BYTES
    config = outcome.report["state"]["reported"]["config"]
    shown = config["errors"]
    assert len(shown) >= 3
    assert shown == [{"field": e.path, "reason": e.message} for e in outcome.errors[: len(shown)]]
    assert config["more_errors"] == 700 - len(shown)
    event = audit[-1].to_json()
    assert len(json.dumps(event, separators=(",", ":"))) < 8 * 1024
    logged = event["config"]
    assert len(logged["errors"]) > len(shown)
    assert logged["more_errors"] == 700 - len(logged["errors"])
    # the next applied report removes what the rejection left in the shadow
    applied = handler.handle("delta", delta(6, {"detector": {"score_threshold": 0.6}}))
    assert applied.report is not None
    assert applied.report["state"]["reported"]["config"]["more_errors"] is None


def test_one_huge_error_message_is_clipped_keeping_its_advice(tmp_path: Path) -> None:
    handler, _, audit = make(tmp_path)

    def reported_errors(state: dict[str, Any]) -> list[dict[str, str]]:
        outcome = handler.handle("delta", delta(5, state))
        assert outcome.status == "rejected"
        assert outcome.report is not None
        assert len(json.dumps(outcome.report, separators=(",", ":"))) <= REPORT_MAX_BYTES
        assert len(json.dumps(audit[-1].to_json())) < 8 * 1024
        config = outcome.report["state"]["reported"]["config"]
        assert config["more_errors"] == 0
        errors: list[dict[str, str]] = config["errors"]
        return errors

    [error] = reported_errors({"detector": {"model": "x" * 7000}})
    assert error["field"] == "detector.model"
    reason = error["reason"]
    assert len(reason) <= REASON_MAX_BYTES
    assert reason.startswith("'xxx")
    assert "x..." in reason
    assert reason.endswith(f"choose one of {sorted(MODELS)}")  # the advice survives
    [error] = reported_errors({"k" * 7000: 1})
    assert len(error["field"]) <= FIELD_MAX_BYTES
    assert error["field"].startswith("kkk")
    assert "not remotely settable" in error["reason"]


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
@pytest.mark.slow
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
