"""The ``FrameSource`` protocol every capture backend implements."""

from __future__ import annotations

__all__ = ["FrameSource", "PreparesFrames"]

import threading
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from edge_app.domain import Frame, Image


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


@runtime_checkable
class PreparesFrames(Protocol):
    """A source that runs ``prepare`` on each image on its reader thread, ahead of the camera
    loop, and hands the result over as ``Frame.prepared``. None (the default) prepares nothing.

    The camera loop sets it (to the detector's ``prepare``) when it detects on every frame, so
    the resize overlaps the inference of the previous frame. Read once per frame by the reader
    thread, so it may be swapped while frames flow; frames already queued keep the old result.
    """

    prepare: Callable[[Image], object] | None
