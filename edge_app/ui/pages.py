"""The local status page's routes (``/ui/...``), answered for the health endpoint.

Every request here has passed the endpoint's gate (``telemetry.access``): the token or session
cookie when the endpoint is exposed, and for each ``POST`` the CSRF check. Routes:

=========================================  ==================================================
``GET /ui/``                               the page (HTML; the CSRF secret in a meta tag)
``GET /ui/static/<file>``                  its script and style sheet (shipped in the package)
``GET|POST /ui/login``                     sign-in form: the token in, a session cookie out
``GET /ui/api/state``                      config, model, outbox, lanes (beside ``/status``)
``GET /ui/api/events``                     recent events, newest first: ``camera``, ``rule``,
                                           ``before`` (cursor), ``limit``, ``review=pending``
``GET /ui/live/<camera>.jpg``              the live annotated frame (``live.LiveView``)
``GET /ui/snapshot/<id>.jpg?kind=``        an event's snapshot: annotated, ``clean``, ``crop``
``GET /ui/clip/<id>.mp4``                  an event's clip
``GET /ui/api/zones?camera=``              a camera's zones and crossing lines in force
``POST /ui/api/zones``                     change them (``zones.ZoneEditor``)
``POST /ui/api/review``                    a verdict on an event (``review``)
=========================================  ==================================================

Bad input gets a 4xx with a sentence saying what is wrong; nothing here raises to the server.
"""

from __future__ import annotations

__all__ = ["StatusPages", "UiSources"]

import html
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from edge_app.atrest import Sealer, read_stored
from edge_app.clock import Clock
from edge_app.config import AppConfig
from edge_app.domain import Event
from edge_app.errors import EdgeAppError
from edge_app.outbox import EventJournal, LaneStats, Outbox
from edge_app.pipeline import EventSink, RuntimeHolder
from edge_app.redact import redact
from edge_app.telemetry.pages import Request, Response
from edge_app.ui.live import LiveView
from edge_app.ui.review import ReviewError, parse_verdict, review_event
from edge_app.ui.zones import ZoneEditor, ZoneError

log = logging.getLogger(__name__)

_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_HTML = "text/html; charset=utf-8"
# The page's own files only: no inline script runs, nothing loads from elsewhere.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = (
    ("Content-Security-Policy", _CSP),
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: with no-referrer a form POST says "Origin: null"
    ("Referrer-Policy", "same-origin"),
)


@dataclass(frozen=True, slots=True)
class UiSources:
    """What the page reads and writes, all owned by the composition root: ``config`` (the
    local file: data paths), ``live`` (runtime in force), ``journal``, ``outbox``, ``accept``
    (``EventIntake.accept``, for review events), ``lanes`` (name -> stats), ``status`` (the
    ``/status`` body), ``zones`` (None without remote config: the editor is then off)."""

    config: AppConfig
    live: RuntimeHolder
    journal: EventJournal
    outbox: Outbox
    accept: EventSink
    lanes: Mapping[str, Callable[[], LaneStats | None]]
    status: Callable[[], dict[str, Any]]
    zones: ZoneEditor | None
    sealer: Sealer | None
    clock: Clock


class StatusPages:
    """The ``Pages`` of the health endpoint: the local status page."""

    def __init__(self, sources: UiSources, live_view: LiveView) -> None:
        self._s = sources
        self._live = live_view

    def handle(self, request: Request) -> Response | None:
        path = request.path
        if path == "/ui":
            return Response(308, "text/plain", b"", (("Location", "/ui/"),))
        if not path.startswith("/ui/"):
            return None
        try:
            return self._route(request, path[len("/ui/") :])
        except EdgeAppError as exc:  # a store or file that cannot be read right now
            log.warning("status page %s: %s", path, exc)
            return _text(503, f"{exc}; try again shortly\n")

    def _route(self, request: Request, rest: str) -> Response | None:  # noqa: PLR0911
        get = request.method == "GET"
        if rest == "" and get:
            return self._page(request)
        if rest == "login":
            return self._login(request)
        if rest.startswith("static/") and get:
            return _static(rest[len("static/") :])
        if rest == "api/state" and get:
            return _json(self._state())
        if rest == "api/events" and get:
            return self._events(request.query)
        if rest.startswith("live/") and rest.endswith(".jpg") and get:
            jpeg = self._live.jpeg(rest[len("live/") : -len(".jpg")])
            if jpeg is None:
                return _text(404, "no frame from that camera yet (or no such camera)\n")
            return Response(200, "image/jpeg", jpeg)
        if rest.startswith("snapshot/") and rest.endswith(".jpg") and get:
            return self._snapshot(rest[len("snapshot/") : -len(".jpg")], request.query)
        if rest.startswith("clip/") and rest.endswith(".mp4") and get:
            return self._clip(rest[len("clip/") : -len(".mp4")])
        if rest == "api/zones":
            return self._zones(request)
        if rest == "api/review" and request.method == "POST":
            return self._review(request.body)
        return None

    # -- the page ----------------------------------------------------------------------------

    def _page(self, request: Request) -> Response:
        cameras = [c.name for c in self._s.live.current.snapshot.config.cameras]
        text = _resource("index.html")
        text = text.replace("{{CSRF}}", html.escape(request.access.csrf))
        text = text.replace("{{CAMERAS}}", html.escape(json.dumps(cameras)))
        text = text.replace("{{DEVICE}}", html.escape(self._s.config.device.thing_name))
        return Response(200, _HTML, text.encode(), _SECURITY_HEADERS)

    def _login(self, request: Request) -> Response:
        access = request.access
        if request.method == "GET":
            return _login_form(access.csrf, "")
        if request.method != "POST":
            return _text(405, "use GET or POST\n")
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if not access.same_origin_post(request.headers, form.get("csrf", "")):
            return _text(403, "cross-site sign-in refused: use the form at /ui/login\n")
        if access.token is None:
            return Response(303, "text/plain", b"", (("Location", "/ui/"),))
        cookie = access.login(form.get("token", ""))
        if cookie is None:
            return _login_form(access.csrf, "That is not the token. Try again.", status=401)
        return Response(303, "text/plain", b"", (("Location", "/ui/"), ("Set-Cookie", cookie)))

    # -- reading -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        runtime = self._s.live.current
        snap = runtime.snapshot
        stats = self._s.outbox.stats()
        oldest = None if stats.oldest_wall is None else self._s.clock.time() - stats.oldest_wall
        lanes = {}
        for name, read in self._s.lanes.items():
            lane = read()
            if lane is not None:
                lanes[name] = {"rows": lane.rows, "bytes": lane.bytes, "dropped": lane.dropped}
        return {
            **self._s.status(),
            "config": {
                "version": snap.config.version,
                "source": snap.source,
                "remote_version": snap.remote_version,
                "digest": snap.digest,
            },
            "model_sha256": runtime.detector.model.sha256,
            "outbox": {
                "depth": stats.depth,
                "bytes": stats.bytes,
                "oldest_age_s": None if oldest is None else round(oldest, 1),
                "dropped_total": sum(stats.dropped_total.values()),
                "dead_letters": self._s.outbox.dead_letters(),
            },
            "lanes": lanes,
            "zone_editor": self._s.zones is not None,
        }

    def _events(self, query: dict[str, str]) -> Response:
        try:
            before = int(query["before"]) if "before" in query else None
            limit = int(query.get("limit", "25"))
        except ValueError:
            return _text(400, "before and limit must be whole numbers\n")
        rows = self._s.journal.page(
            camera=query.get("camera") or None,
            rule=query.get("rule") or None,
            before=before,
            limit=limit,
            pending_review=query.get("review") == "pending",
        )
        ids = [str(r.doc["id"]) for r in rows]
        held = self._s.outbox.whereabouts(ids)
        verdicts = self._s.journal.verdicts(ids)
        items = []
        for row in rows:
            doc = row.doc
            verdict = verdicts.get(str(doc["id"]))
            items.append(
                {
                    "n": row.n,
                    "event": doc,
                    "delivery": held.get(str(doc["id"]), "delivered"),
                    "verdict": None if verdict is None else _verdict_view(verdict),
                }
            )
        cursor = rows[-1].n if len(rows) == max(1, min(limit, 500)) else None
        return _json({"events": items, "next_before": cursor})

    def _event(self, event_id: str) -> dict[str, Any] | None:
        if not _ID.fullmatch(event_id):
            return None
        row = self._s.journal.get(event_id)
        return None if row is None else row.doc

    def _snapshot(self, event_id: str, query: dict[str, str]) -> Response:
        doc = self._event(event_id)
        snap = None if doc is None else doc.get("snapshot")
        if not isinstance(snap, dict):
            return _text(404, "no snapshot for that event\n")
        kind = query.get("kind", "annotated")
        rel = Path(str(snap["file"]))
        if kind in ("clean", "crop"):
            rel = rel.with_name(f"{rel.stem}.{kind}.jpg")
        elif kind != "annotated":
            return _text(400, "kind must be annotated, clean or crop\n")
        data = self._read_under(self._s.config.snapshot_dir, rel)
        if data is None:
            return _text(404, "the snapshot file is gone (local retention removed it)\n")
        return Response(200, "image/jpeg", data)

    def _clip(self, event_id: str) -> Response:
        doc = self._event(event_id) or {}
        clip = doc.get("clip")
        if not isinstance(clip, str):
            return _text(404, "no clip for that event\n")
        data = self._read_under(self._s.config.clip_dir(str(doc["camera"])), Path(clip))
        if data is None:
            return _text(404, "the clip is not written yet, or retention removed it\n")
        return Response(200, "video/mp4", data)

    def _read_under(self, root: Path, rel: Path) -> bytes | None:
        """The clear bytes of ``root/rel``, never outside ``root`` (names come from events)."""
        path = (root / rel).resolve()
        if not path.is_relative_to(root.resolve()):
            return None
        try:
            return read_stored(path, self._s.sealer)
        except OSError:
            return None

    # -- changing --------------------------------------------------------------------------

    def _zones(self, request: Request) -> Response:  # noqa: PLR0911  # one answer per failure
        editor = self._s.zones
        if editor is None:
            return _text(503, "the zone editor is off (ui.enabled: false)\n")
        if request.method == "GET":
            try:
                return _json(editor.current(request.query.get("camera", "")))
            except ZoneError as exc:
                return _text(400, f"{exc}\n")
        if request.method != "POST":
            return _text(405, "use GET or POST\n")
        try:
            outcome = editor.change(request.body)
        except ZoneError as exc:
            return _text(400, f"{exc}\n")
        except TimeoutError:
            return _text(503, "the config thread is busy (a model is loading); try again\n")
        if outcome.status != "applied":
            errors = [str(e) for e in outcome.errors]
            return _json({"status": outcome.status, "errors": errors}, status=422)
        return _json({"status": "applied", "digest": outcome.digest})

    def _review(self, body: bytes) -> Response:
        try:
            verdict = parse_verdict(body)
        except ReviewError as exc:
            return _text(400, f"{exc}\n")
        original = self._event(verdict.event_id)
        if original is None:
            return _text(404, "no such event in the page's journal\n")
        if original.get("rule") == "review":
            return _text(400, "a verdict is given on an event, not on another verdict\n")
        stored: Event = self._s.accept(review_event(verdict, original, self._s.clock))
        return _json({"id": stored.id, "seq": stored.seq, "verdict": verdict.verdict})


def _verdict_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "verdict": doc.get("verdict"),
        "label": doc.get("label"),
        "bbox": doc.get("bbox"),
        "ts": doc.get("ts"),
    }


def _resource(name: str) -> str:
    return resources.files("edge_app.ui").joinpath("static", name).read_text("utf-8")


def _static(name: str) -> Response | None:
    ctype = _STATIC.get(name)
    if ctype is None:
        return None
    body = _resource(name).encode()
    return Response(200, ctype, body, (("X-Content-Type-Options", "nosniff"),))


def _login_form(csrf: str, message: str, *, status: int = 200) -> Response:
    text = _resource("login.html")
    text = text.replace("{{CSRF}}", html.escape(csrf)).replace("{{MESSAGE}}", html.escape(message))
    return Response(status, _HTML, text.encode(), _SECURITY_HEADERS)


def _json(doc: Any, *, status: int = 200) -> Response:
    # names from the config and quoted errors pass the one redaction, like /status
    body = redact(json.dumps(doc, default=str)).encode()
    return Response(status, "application/json", body)


def _text(status: int, text: str) -> Response:
    return Response(status, "text/plain; charset=utf-8", redact(text).encode())
