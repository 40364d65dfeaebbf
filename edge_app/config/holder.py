"""The running configuration: an immutable snapshot, replaced as a whole in one assignment.

Readers (each camera loop at the top of its iteration) take ``holder.current`` once and use
that snapshot for the whole frame; the writer (the remote-config handler) builds and checks a
new snapshot first and then swaps it in. No reader ever sees half a change, and no lock is
held on the hot path: reading one attribute is atomic in CPython.
"""

from __future__ import annotations

__all__ = ["ConfigSnapshot", "SnapshotHolder"]

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge_app.config.remote import config_digest
from edge_app.config.schema import AppConfig


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """One running configuration and where it came from.

    ``source`` is ``file``, ``last-good`` or ``remote``; ``remote_version`` the shadow version
    of the overlay in it (None: local file only); ``digest`` is ``config_digest(config)``.
    """

    config: AppConfig
    source: str
    remote_version: int | None
    digest: str

    @classmethod
    def of(cls, config: AppConfig, source: str, remote_version: int | None) -> ConfigSnapshot:
        return cls(config, source, remote_version, config_digest(config))


T = TypeVar("T")


class SnapshotHolder(Generic[T]):
    """Holds the current immutable snapshot; ``swap`` replaces it (writers are serialised)."""

    def __init__(self, initial: T) -> None:
        self._current = initial
        self._write = threading.Lock()

    @property
    def current(self) -> T:
        """The snapshot in force now; keep the reference for as long as you need one view."""
        return self._current

    def swap(self, snapshot: T) -> T:
        """Put ``snapshot`` in force (one assignment); returns the one it replaced."""
        with self._write:
            previous, self._current = self._current, snapshot
        return previous
