"""The remote-config transaction: one shadow document in, one decision and one report out.

``ShadowHandler.handle`` never raises for bad input: whatever bytes arrive, it returns an
``Outcome`` (applied, unchanged, rejected or stale) and, except for stale duplicates, the
``reported`` document to publish. The order of a change is fixed:

1. parse (size, JSON, depth) and read ``version``; a version not newer than the last one seen
   is stale (duplicate or out-of-order delivery) and changes nothing;
2. rebuild the full desired document (``get``: as sent; ``delta``: merged into the last one),
   validate it against the local file (``validate_overlay``);
3. ``Applier.apply``: load and test-run a new model if it changed, then swap the runtime
   (the applier raises and keeps the old one if anything fails);
4. persist as last-good, record an audit event, build the report.

Rejected changes leave the running config, the last-good file and the stored desired document
as they were, and the report names every invalid field with its reason.
"""

from __future__ import annotations

__all__ = ["Applier", "AuditSink", "Outcome", "ShadowHandler"]

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edge_app.clock import Clock
from edge_app.config import (
    AppConfig,
    ConfigSnapshot,
    LastGood,
    LastGoodStore,
    merge_delta,
    parse_payload,
    validate_overlay,
)
from edge_app.domain import Event, ModelRef, Phase, Severity
from edge_app.errors import ConfigError, EdgeAppError, FieldError
from edge_app.ids import new_ulid

log = logging.getLogger(__name__)

Status = Literal["applied", "unchanged", "rejected", "stale"]
Kind = Literal["get", "delta"]

AuditSink = Callable[[Event], object]
"""Stores an audit event durably (``Outbox.enqueue``); its return value is ignored."""

# Top-level keys of a desired document echoed in ``reported`` once applied, so the shadow's
# delta (desired minus reported) empties.
_ECHOED = ("detector", "cameras", "rules", "uplink")


class Applier(Protocol):
    """Puts a validated config into force; implemented by the composition root."""

    def current(self) -> ConfigSnapshot:
        """The snapshot in force now."""
        ...

    def model(self) -> ModelRef:
        """The model in force now (lineage of audit events)."""
        ...

    def apply(self, config: AppConfig, remote_version: int) -> ConfigSnapshot:
        """Swap ``config`` in; raise ``EdgeAppError`` (and change nothing) if it cannot run."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one shadow message.

    ``version`` is the shadow version of the message (None if it had none); ``digest`` the
    digest of the config in force afterwards; ``report`` the ``update`` document to publish
    (None for stale messages, which are answered by the report already sent for them, and for
    unchanged ones the shadow already shows as reported).
    """

    status: Status
    version: int | None
    digest: str
    errors: tuple[FieldError, ...] = ()
    report: dict[str, Any] | None = field(default=None, compare=False)


class ShadowHandler:
    """Decides on shadow documents for one device. Call from one thread only.

    ``local`` is the config from the local file (the base every overlay is laid on);
    ``models`` the manifest's model names; ``last`` the last-good overlay in force at boot.
    """

    def __init__(
        self,
        local: AppConfig,
        applier: Applier,
        store: LastGoodStore,
        *,
        models: Collection[str],
        clock: Clock,
        audit: AuditSink | None = None,
        last: LastGood | None = None,
    ) -> None:
        self._local = local
        self._applier = applier
        self._store = store
        self._models = frozenset(models)
        self._clock = clock
        self._audit = audit
        self._desired: dict[str, Any] = dict(last.desired) if last else {}
        self._seen = last.version if last else -1
        self._echoed: set[str] = set(self._desired) & set(_ECHOED)

    @property
    def last_version(self) -> int:
        """The newest shadow version handled (-1: none yet)."""
        return self._seen

    def handle(self, kind: Kind, payload: bytes) -> Outcome:
        """Decide on one ``get/accepted`` (``kind="get"``) or ``update/delta`` payload."""
        doc: Any = None
        try:
            doc = parse_payload(payload)
            version, desired, token = self._read(kind, doc)
        except ConfigError as exc:
            return self._reject(None, exc.errors, None)
        if version <= self._seen:
            log.info("shadow %s v%d ignored: v%d already handled", kind, version, self._seen)
            return Outcome("stale", version, self._applier.current().digest)
        self._seen = version
        try:
            _, effective = validate_overlay(desired, self._local, self._models)
        except ConfigError as exc:
            return self._reject(version, exc.errors, token)
        current = self._applier.current()
        if current.remote_version is not None and current.config == effective.model_copy(
            update={"version": current.config.version}
        ):
            # Nothing differs (typically the get after a reconnect): no swap, no audit. Report
            # only if the shadow does not already show what runs.
            self._desired = desired
            shown = _reported_digest(doc) if kind == "get" else None
            report = None if shown == current.digest else self._applied_report(version, token)
            return Outcome("unchanged", version, current.digest, (), report)
        effective = effective.model_copy(update={"version": version})
        try:
            snapshot = self._applier.apply(effective, version)
        except EdgeAppError as exc:
            where = "detector.model" if _model_changed(current.config, effective) else ""
            return self._reject(version, [FieldError(where, str(exc))], token)
        self._desired = desired
        try:
            self._store.save(LastGood(desired, version, snapshot.digest))
        except ConfigError as exc:
            # Running, but a reboot would fall back: say so loudly; the next change retries.
            log.error("config v%d applied but not persisted: %s", version, exc)
        self._record("applied", version, snapshot, ())
        return Outcome(
            "applied", version, snapshot.digest, (), self._applied_report(version, token)
        )

    # -- internals -------------------------------------------------------------------------

    def _read(self, kind: Kind, doc: Any) -> tuple[int, dict[str, Any], str | None]:
        if not isinstance(doc, dict):
            raise ConfigError(kind, [FieldError("", "a shadow document must be a JSON object")])
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ConfigError(kind, [FieldError("version", "missing or not an integer >= 0")])
        token = doc.get("clientToken")
        token = token if isinstance(token, str) and len(token) <= 64 else None
        state = doc.get("state")
        if kind == "get":
            state = state.get("desired", {}) if isinstance(state, dict) else state
            state = {} if state is None else state
        if not isinstance(state, dict):
            where = "state.desired" if kind == "get" else "state"
            raise ConfigError(kind, [FieldError(where, "must be a JSON object")])
        desired = state if kind == "get" else merge_delta(self._desired, state)
        return version, desired, token

    def _reject(self, version: int | None, errors: list[FieldError], token: str | None) -> Outcome:
        current = self._applier.current()
        log.warning(
            "remote config v%s rejected, keeping v%s: %s",
            version,
            current.remote_version,
            "; ".join(str(e) for e in errors),
        )
        self._record("rejected", version, current, tuple(errors))
        report: dict[str, Any] = {
            "state": {
                "reported": {
                    "config": {
                        **_config_status(current),
                        "status": "rejected",
                        "rejected_version": version,
                        "errors": [{"field": e.path, "reason": e.message} for e in errors],
                    }
                }
            }
        }
        if token is not None:
            report["clientToken"] = token
        return Outcome("rejected", version, current.digest, tuple(errors), report)

    def _applied_report(self, version: int, token: str | None) -> dict[str, Any]:
        snapshot = self._applier.current()
        reported: dict[str, Any] = dict.fromkeys(self._echoed - set(self._desired))
        reported.update({k: v for k, v in self._desired.items() if k in _ECHOED})
        self._echoed = set(self._desired) & set(_ECHOED)
        reported["config"] = {
            **_config_status(snapshot),
            "status": "applied",
            "rejected_version": None,
            "errors": None,
        }
        report: dict[str, Any] = {"state": {"reported": reported}}
        if token is not None:
            report["clientToken"] = token
        log.info("remote config v%d in force (%s)", version, snapshot.digest)
        return report

    def _record(
        self,
        status: str,
        version: int | None,
        snapshot: ConfigSnapshot,
        errors: tuple[FieldError, ...],
    ) -> None:
        if self._audit is None:
            return
        wall = self._clock.time()
        event = Event(
            id=new_ulid(wall),
            device=self._local.device.thing_name,
            camera="-",
            rule="config",
            phase=Phase.UPDATE,
            severity=Severity.LOW if status == "applied" else Severity.MEDIUM,
            wall=wall,
            mono=self._clock.monotonic(),
            label=status,
            score=1.0 if status == "applied" else 0.0,
            bbox=(0.0, 0.0, 0.0, 0.0),
            model=self._applier.model(),
            config_version=snapshot.config.version,
            extra={
                "config": {
                    "status": status,
                    "version": version,
                    "digest": snapshot.digest,
                    "errors": [{"field": e.path, "reason": e.message} for e in errors],
                }
            },
        )
        try:
            self._audit(event)
        except EdgeAppError as exc:
            log.error("audit event of config v%s not stored: %s", version, exc)


def _config_status(snapshot: ConfigSnapshot) -> dict[str, Any]:
    return {
        "version": snapshot.remote_version,
        "digest": snapshot.digest,
        "source": snapshot.source,
    }


def _reported_digest(doc: Any) -> Any:
    """``state.reported.config.digest`` of a ``get/accepted`` document, if there is one."""
    try:
        return doc["state"]["reported"]["config"]["digest"]
    except (KeyError, TypeError):
        return None


def _model_changed(old: AppConfig, new: AppConfig) -> bool:
    return old.detector.model != new.detector.model
