"""Over-the-air model updates: fetch an offered model, check it against the running one on
recent real frames, switch at a frame boundary, watch it, roll back on failure
(``ModelUpdater``, the ``edge_app.models.offer.ModelUpdates`` the Jobs agent calls)."""

from edge_app.updates.record import UpdateRecord
from edge_app.updates.updater import ModelUpdater, UpdateParts

__all__ = ["ModelUpdater", "UpdateParts", "UpdateRecord"]
