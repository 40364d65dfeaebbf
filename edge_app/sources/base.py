"""The ``FrameSource`` protocol every capture backend implements."""

from __future__ import annotations

__all__ = ["FramePreparer", "FrameSource", "PreparesFrames"]

import threading
from collections.abc import Iterator
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


class FramePreparer(Protocol):
    """Work a source's reader thread does on each image ahead of the camera loop (the
    detector's resize, ``edge_app.vision.Preparer``). Thread-safe; its result becomes
    ``Frame.prepared``."""

    def prepare(self, image_bgr: Image) -> object: ...


@runtime_checkable
class PreparesFrames(Protocol):
    """A source with a reader thread that can run a ``FramePreparer`` on each image.

    The camera loop asks for it when it detects on every frame, so the resize overlaps the
    inference of the previous frame. The reader looks at the preparer once per frame, so it
    may be changed while frames flow (a model swap); frames already queued keep their result.
    """

    def prepare_with(self, preparer: FramePreparer | None) -> None:
        """Run ``preparer`` on each image from the next one on; None: prepare nothing."""
        ...
