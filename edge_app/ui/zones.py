"""The zone editor's side of a config change: the page's JSON in, a local overlay out.

A camera's zones (``cameras.<name>.zones``) and the crossing lines of its per-object rules
(``rules[].line``) are remotely settable fields, so an edit on the page becomes the same kind
of partial desired document a shadow delta is, and goes through the same transaction on the
remote-config thread (``ShadowClient.local_change`` -> ``ShadowHandler.handle_local``; without
an uplink, under a lock):
validate against the local file, swap the runtime atomically, persist as last-good, record a
``config`` audit event (``origin: local``), report to the shadow.
"""

from __future__ import annotations

__all__ = ["ZoneEditor", "ZoneError"]

import json
from collections.abc import Callable
from typing import Any

from edge_app.pipeline import RuntimeHolder
from edge_app.remote import Outcome

Submit = Callable[[dict[str, Any], float], Outcome]
"""Decides on a partial desired document within the given seconds (``builder.ConfigChange``)."""


class ZoneError(ValueError):
    """The page sent a malformed edit; the message says what is wrong."""


class ZoneEditor:
    """Reads a camera's zones and lines from the runtime in force and hands edits to
    ``submit`` (waiting up to ``timeout_s`` for the decision)."""

    def __init__(self, live: RuntimeHolder, submit: Submit, *, timeout_s: float) -> None:
        self._live = live
        self._submit = submit
        self._timeout = timeout_s

    def current(self, camera: str) -> dict[str, Any]:
        """``{"camera", "zones": [{name, polygon}], "lines": [{rule, line}]}`` in force."""
        config = self._live.current.snapshot.config
        cam = next((c for c in config.cameras if c.name == camera), None)
        if cam is None:
            names = ", ".join(c.name for c in config.cameras)
            raise ZoneError(f"no camera named {camera!r}; cameras: {names}")
        lines = [
            {"rule": r.name, "line": [list(p) for p in r.line]}
            for r in config.rules
            if r.line is not None and r.camera in (None, camera)
        ]
        zones = [{"name": z.name, "polygon": [list(p) for p in z.polygon]} for z in cam.zones]
        return {"camera": camera, "zones": zones, "lines": lines}

    def change(self, body: bytes) -> Outcome:
        """Apply ``{"camera", "zones": [...], "lines"?: {rule: [[x, y], [x, y]]}}``. Raises
        ``ZoneError`` for a malformed body or an unknown line rule, ``TimeoutError`` when the
        config thread does not decide in time; field errors come back in the ``Outcome``."""
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ZoneError(f"the body is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("camera"), str):
            raise ZoneError('the body must be {"camera": name, "zones": [...], "lines": {...}}')
        camera = doc["camera"]
        self.current(camera)  # an unknown camera is refused here, with the names
        zones = doc.get("zones")
        if not isinstance(zones, list):
            raise ZoneError("zones: must be a list of {name, polygon}")
        state: dict[str, Any] = {"cameras": {camera: {"zones": zones}}}
        lines = doc.get("lines") or {}
        if not isinstance(lines, dict):
            raise ZoneError("lines: must be {rule name: [[x1, y1], [x2, y2]]}")
        if lines:
            state["rules"] = self._rules_with(lines, camera)
        return self._submit(state, self._timeout)

    def _rules_with(self, lines: dict[str, Any], camera: str) -> list[dict[str, Any]]:
        """The whole rules list in force (remote ``rules`` replaces it) with new lines."""
        config = self._live.current.snapshot.config
        known = {r.name for r in config.rules if r.line is not None and r.camera in (None, camera)}
        unknown = sorted(set(lines) - known)
        if unknown:
            raise ZoneError(f"lines: no crossing rule named {unknown[0]!r} on this camera")
        rules = []
        for rule in config.rules:
            doc = rule.model_dump(mode="json", exclude_defaults=True)
            if rule.name in lines:
                doc["line"] = lines[rule.name]
            rules.append(doc)
        return rules
