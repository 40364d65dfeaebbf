"""The ``FrameSource`` protocol every capture backend implements."""

from __future__ import annotations

__all__ = ["FrameSource"]

import threading
from collections.abc import Iterator
from typing import Protocol

from edge_app.domain import Frame


class FrameSource(Protocol):
    """Yields frames of one camera until the source ends or ``stop`` is set.

    ``frames`` may be called once. ``dropped`` counts frames captured but never delivered
    (a live source keeps only the latest frame). The caller owns the source and closes it.
    """

    camera: str

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...

    @property
    def dropped(self) -> int: ...

    def close(self) -> None: ...
