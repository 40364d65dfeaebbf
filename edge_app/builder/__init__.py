"""Builds every part of the appliance from its config: opened, wired, not started.

``build_app`` opens the parts in dependency order (outbox, detector, uplink lanes, transport,
drain, telemetry, intake, health events, retention, sources and camera loops, remote config)
and registers each one's close on the caller's ``ExitStack`` the moment it exists, so a
failure half-way closes exactly what was opened, newest first. Starting the threads is
``EdgeApp.start``'s job; it registers their stops on the same stack. Nothing here starts a
thread except the clip writer's, which lives and dies with the ``ClipWriter`` (closed on the
stack like the rest).

Where the live configuration is: ``AppParts.live`` (config snapshot + detector in force). The
local file is only read for what remote config can never change: paths, broker, certificates,
identities.
"""

from edge_app.builder.build import build_app
from edge_app.builder.parts import AppParts, Seams, UiParts, UplinkParts

__all__ = ["AppParts", "Seams", "UiParts", "UplinkParts", "build_app"]
