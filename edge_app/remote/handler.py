"""The remote-config transaction: one shadow document in, one decision and one report out.

``ShadowHandler.handle`` never raises for bad input: whatever bytes arrive, it returns an
``Outcome`` (applied, unchanged, rejected or stale) and, except for stale duplicates, the
``reported`` document to publish. The order of a change is fixed:

1. parse (size, JSON, depth) and read ``version``; a version not above the version bar is
   stale (duplicate or out-of-order delivery) and changes nothing;
2. rebuild the full desired document (``get``: as sent; ``delta``: merged into the last one),
   validate it against the local file (``validate_overlay``);
3. ``Applier.apply``: load and test-run a new model if it changed, then swap the runtime
   (the applier raises and keeps the old one if anything fails);
4. raise the bar, persist as last-good, record an audit event, build the report.

The version bar is the newest version put in force (applied, or found to change nothing). A
rejected message never moves it, whatever version it names, so it cannot make later real
changes stale. AWS shadow versions only grow until the shadow is deleted, so deletion resets
the bar: ``delete/accepted``, a 404 answer to our ``get``, or a ``get`` answered with a version
below the bar it was sent at (the shadow was deleted and re-created meanwhile). A reset changes
nothing that runs: the config in force (and its last-good file) stays until the cloud sends a
desired state again, which is then laid over the local file as a whole.

Rejected changes leave the running config, the last-good file and the stored desired document
as they were; the report and the audit event name the first invalid fields, within a byte
budget, and count the rest (``report.py``).
"""

from __future__ import annotations

__all__ = ["Applier", "AuditSink", "ConfigChange", "Outcome", "ShadowHandler"]

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeGuard

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
from edge_app.remote.report import (
    AUDIT_ERRORS_MAX_BYTES,
    bounded_errors,
    config_status,
    rejected_report,
)

log = logging.getLogger(__name__)

Status = Literal["applied", "unchanged", "rejected", "stale"]
Kind = Literal["get", "delta"]

AuditSink = Callable[[Event], object]
"""Stores an audit event durably (``Outbox.enqueue``); its return value is ignored."""

# Top-level keys of a desired document echoed in ``reported`` once applied, so the shadow's
# delta (desired minus reported) empties.
_ECHOED = ("detector", "cameras", "rules", "uplink")

MAX_VERSION = 2**63 - 1
"""Largest shadow version accepted (a 64-bit integer; larger ones are rejected)."""

# Outstanding ``get`` requests remembered (one per connect; older answers are lost anyway).
_ASKED_MAX = 8


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


ConfigChange = Callable[[dict[str, Any], float], Outcome]
"""Decides on a change made on the device (``ShadowHandler.handle_local`` on the remote-config
thread), waiting up to the given seconds: the status page's zone editor, config jobs and the
model updater's switch take this path."""


class ShadowHandler:
    """Decides on shadow documents for one device. Call from one thread only.

    ``local`` is the config from the local file (the base every overlay is laid on);
    ``models`` the models that may be chosen (manifest names, approved registry entries);
    ``last`` the last-good overlay in force at boot
    (its version is the bar until the shadow says otherwise).
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
        self._models = models  # asked afresh at each delta (RemoteChoices reads the registry)
        self._clock = clock
        self._audit = audit
        self._desired: dict[str, Any] = dict(last.desired) if last else {}
        self._bar = last.version if last else -1
        self._echoed: set[str] = set(self._desired) & set(_ECHOED)
        self._asked: dict[str, int] = {}  # clientToken of a get sent -> the bar when sent
        self._gets = 0

    @property
    def last_version(self) -> int:
        """The version bar: the newest shadow version put in force (-1: none, or reset)."""
        return self._bar

    def get_request(self) -> bytes:
        """The payload of one ``get``: a ``clientToken``, echoed in the answer, that ties the
        answer to the bar at sending (see ``handle`` and ``get_rejected``)."""
        self._gets += 1
        token = f"edge-app-get-{self._gets}"
        self._asked[token] = self._bar
        while len(self._asked) > _ASKED_MAX:
            del self._asked[next(iter(self._asked))]
        return json.dumps({"clientToken": token}).encode()

    def handle(self, kind: Kind, payload: bytes) -> Outcome:
        """Decide on one ``get/accepted`` (``kind="get"``) or ``update/delta`` payload."""
        doc: Any = None
        try:
            doc = parse_payload(payload)
            version, state, token = self._read(kind, doc)
        except ConfigError as exc:
            return self._reject(None, exc.errors, None)
        asked = self._asked.pop(token, None) if kind == "get" and token is not None else None
        if asked is not None and version < asked:
            # AWS had this shadow at version `asked` before we asked, and versions only grow:
            # a lower one means it was deleted and re-created meanwhile.
            self._reset(f"the shadow was re-created (our get was answered at v{version})")
        if version <= self._bar:
            log.info("shadow %s v%d ignored: v%d already in force", kind, version, self._bar)
            return Outcome("stale", version, self._applier.current().digest)
        desired = state if kind == "get" else merge_delta(self._desired, state)
        try:
            _, effective = validate_overlay(desired, self._local, self._models)
        except ConfigError as exc:
            return self._reject(version, exc.errors, token)
        current = self._applier.current()
        # Skipping the swap needs the config in force to be from this shadow's history; one
        # from above this version predates a reset, and is applied again to carry this one.
        if (
            current.remote_version is not None
            and current.remote_version <= version
            and current.config == effective.model_copy(update={"version": current.config.version})
        ):
            # Nothing differs (typically the get after a reconnect): no swap, no audit. Report
            # only if the shadow does not already show what runs.
            self._bar, self._desired = version, desired
            shown = _reported_digest(doc) if kind == "get" else None
            report = None if shown == current.digest else self._applied_report(version, token)
            return Outcome("unchanged", version, current.digest, (), report)
        effective = effective.model_copy(update={"version": version})
        try:
            snapshot = self._applier.apply(effective, version)
        except EdgeAppError as exc:
            where = "detector.model" if _model_changed(current.config, effective) else ""
            return self._reject(version, [FieldError(where, str(exc))], token)
        self._bar, self._desired = version, desired
        try:
            self._store.save(LastGood(desired, version, snapshot.digest))
        except ConfigError as exc:
            # Running, but a reboot would fall back: say so loudly; the next change retries.
            log.error("config v%d applied but not persisted: %s", version, exc)
        self._record("applied", version, snapshot, ())
        return Outcome(
            "applied", version, snapshot.digest, (), self._applied_report(version, token)
        )

    def handle_local(self, state: dict[str, Any], *, origin: str = "local") -> Outcome:
        """A change made on the device (the status page's zone editor), ``state`` a partial
        desired document (``{"cameras": {name: {"zones": [...]}}, "rules": [...]}``): the same
        validate, apply, persist and audit as a remote delta, laid over the desired document
        in force. The report writes ``state`` into the shadow's ``desired`` as well as what
        runs into ``reported``, so the shadow agrees and sends no delta that would undo it.
        The version bar does not move (the shadow numbers the update itself); a rejected
        change is audited and answered, never reported. ``origin`` names who made the change
        in the audit event (``local``: the status page; ``job:<id>``: an IoT Job)."""
        desired = merge_delta(self._desired, state)
        try:
            _, effective = validate_overlay(desired, self._local, self._models)
        except ConfigError as exc:
            return self._local_rejected(exc.errors, origin)
        current = self._applier.current()
        effective = effective.model_copy(update={"version": current.config.version})
        try:
            snapshot = self._applier.apply(effective, current.remote_version or 0)
        except EdgeAppError as exc:
            return self._local_rejected([FieldError("", str(exc))], origin)
        self._desired = desired
        try:
            self._store.save(LastGood(desired, max(self._bar, 0), snapshot.digest))
        except ConfigError as exc:
            log.error("local config change applied but not persisted: %s", exc)
        self._record("applied", None, snapshot, (), origin=origin)
        report = self._applied_report(self._bar, None)
        report["state"]["desired"] = state
        log.info("%s config change in force (%s)", origin, snapshot.digest)
        return Outcome("applied", None, snapshot.digest, (), report)

    def _local_rejected(self, errors: list[FieldError], origin: str) -> Outcome:
        current = self._applier.current()
        log.warning(
            "%s config change rejected: %s",
            origin,
            "; ".join(str(e) for e in errors[:5]),
        )
        self._record("rejected", None, current, tuple(errors), origin=origin)
        return Outcome("rejected", None, current.digest, tuple(errors))

    def deleted(self, payload: bytes) -> None:
        """``delete/accepted``: the shadow is gone, and with it the history the bar belongs
        to; reset the bar. The payload (``{"version", "timestamp"}``) only goes to the log."""
        self._reset(f"the shadow was deleted ({payload[:100].decode(errors='replace')})")

    def get_rejected(self, payload: bytes) -> bool:
        """``get/rejected``. A 404 (no shadow) answering one of our gets resets the bar, unless
        a version was put in force after that get was sent (the answer is late). Returns
        whether the bar was reset; other refusals are only logged."""
        try:
            doc = parse_payload(payload)
        except ConfigError:
            doc = None
        if not isinstance(doc, dict) or doc.get("code") != 404:
            log.warning("shadow get refused: %s", payload[:300].decode(errors="replace"))
            return False
        token = doc.get("clientToken")
        asked = self._asked.pop(token, None) if isinstance(token, str) else None
        if asked is None or asked != self._bar:
            log.info("shadow get answered 404, late or for another client: nothing changes")
            return False
        self._reset("no shadow exists (get answered 404)")
        return True

    # -- internals -------------------------------------------------------------------------

    def _read(self, kind: Kind, doc: Any) -> tuple[int, dict[str, Any], str | None]:
        """``version``, state (``get``: ``state.desired``; ``delta``: the delta) and client
        token of a shadow document; ``ConfigError`` if a part is missing or malformed."""
        if not isinstance(doc, dict):
            raise ConfigError(kind, [FieldError("", "a shadow document must be a JSON object")])
        version = doc.get("version")
        if (
            not isinstance(version, int)
            or isinstance(version, bool)
            or not 0 <= version <= MAX_VERSION
        ):
            why = f"missing or not an integer from 0 to {MAX_VERSION}"
            raise ConfigError(kind, [FieldError("version", why)])
        token = doc.get("clientToken")
        # AWS allows 64 bytes; printable ASCII also keeps the report's size bounded
        token = token if _printable(token) and len(token) <= 64 else None
        state = doc.get("state")
        if kind == "get":
            state = state.get("desired", {}) if isinstance(state, dict) else state
            state = {} if state is None else state
        if not isinstance(state, dict):
            where = "state.desired" if kind == "get" else "state"
            raise ConfigError(kind, [FieldError(where, "must be a JSON object")])
        return version, state, token

    def _reset(self, why: str) -> None:
        """Forget the deleted shadow: the bar, its desired document, what we reported to it
        and the gets sent to it. What runs is not touched."""
        current = self._applier.current()
        log.info(
            "%s: version bar reset (was v%d); the config in force (%s v%s) stays until the "
            "cloud sends a desired state",
            why,
            self._bar,
            current.source,
            current.remote_version,
        )
        self._bar = -1
        self._desired = {}
        self._echoed = set()
        self._asked.clear()

    def _reject(self, version: int | None, errors: list[FieldError], token: str | None) -> Outcome:
        current = self._applier.current()
        report = rejected_report(current, self._applier.model(), version, errors, token)
        config = report["state"]["reported"]["config"]
        log.warning(
            "remote config v%s rejected, keeping v%s: %s%s",
            version,
            current.remote_version,
            "; ".join(f"{e['field'] or '<root>'}: {e['reason']}" for e in config["errors"]),
            f" (and {config['more_errors']} more)" if config["more_errors"] else "",
        )
        self._record("rejected", version, current, tuple(errors))
        return Outcome("rejected", version, current.digest, tuple(errors), report)

    def _applied_report(self, version: int, token: str | None) -> dict[str, Any]:
        snapshot = self._applier.current()
        reported: dict[str, Any] = dict.fromkeys(self._echoed - set(self._desired))
        reported.update({k: v for k, v in self._desired.items() if k in _ECHOED})
        self._echoed = set(self._desired) & set(_ECHOED)
        reported["config"] = {
            **config_status(snapshot, self._applier.model()),
            "status": "applied",
            "rejected_version": None,
            "errors": None,
            "more_errors": None,  # null deletes what a rejection left in the shadow
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
        *,
        origin: str = "shadow",
    ) -> None:
        if self._audit is None:
            return
        wall = self._clock.time()
        shown, more = bounded_errors(errors, AUDIT_ERRORS_MAX_BYTES)
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
                    "errors": shown,
                    "more_errors": more,
                    # only a device-made change says so: shadow audits keep their wire form
                    **({"origin": origin} if origin != "shadow" else {}),
                }
            },
        )
        try:
            self._audit(event)
        except EdgeAppError as exc:
            log.error("audit event of config v%s not stored: %s", version, exc)


def _printable(token: Any) -> TypeGuard[str]:
    return isinstance(token, str) and token.isascii() and token.isprintable()


def _reported_digest(doc: Any) -> Any:
    """``state.reported.config.digest`` of a ``get/accepted`` document, if there is one."""
    try:
        return doc["state"]["reported"]["config"]["digest"]
    except (KeyError, TypeError):
        return None


def _model_changed(old: AppConfig, new: AppConfig) -> bool:
    return old.detector.model != new.detector.model
