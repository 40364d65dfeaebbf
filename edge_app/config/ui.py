"""Settings of the local status page (``edge_app.ui``), served on the health endpoint."""

from __future__ import annotations

__all__ = ["UiConfig"]

from pydantic import Field

from edge_app.config.base import Model


class UiConfig(Model):
    enabled: bool = Field(
        True,
        description="Serve the status page (live view, events, health, zone editor, review) "
        "under /ui/ on the health endpoint; needs health.enabled. Loopback-only unless "
        "health.host says otherwise, and then behind the health token.",
    )
    live_fps: float = Field(
        2.0,
        ge=0.5,
        le=15,
        description="Most live-view JPEGs encoded per second per camera, shared by every "
        "viewer, and most answers per second on each connection (a faster client waits); "
        "encoded on the viewers' HTTP threads, never on the frame loop.",
    )
    journal_rows: int = Field(
        5000,
        ge=100,
        le=1_000_000,
        description="Recent events the page keeps for its list and the review queue "
        "(<data_dir>/journal.db), delivered or not.",
    )
