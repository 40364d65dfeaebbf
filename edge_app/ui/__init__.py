"""The local status page: live view, events, health, zone editor, review queue, and the
export of reviewed events as a training set (docs/ui.md)."""

from edge_app.ui.export import export_reviews
from edge_app.ui.live import LiveView
from edge_app.ui.pages import StatusPages, UiSources
from edge_app.ui.review import VERDICTS, ReviewError, parse_verdict, review_event
from edge_app.ui.zones import ZoneEditor, ZoneError

__all__ = [
    "VERDICTS",
    "LiveView",
    "ReviewError",
    "StatusPages",
    "UiSources",
    "ZoneEditor",
    "ZoneError",
    "export_reviews",
    "parse_verdict",
    "review_event",
]
