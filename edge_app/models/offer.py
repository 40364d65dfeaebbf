"""A model offered over the air, and what came of it: the contract between who offers a model
(an AWS IoT Job, the shadow) and the updater that fetches, checks and switches to it.

The offer names the bytes exactly (URL, sha256, size) and the registry identity they get
(``name``/``version``, the same patterns as ``registry.py``). Nothing in an offer is a path or a
command: the URL is only ever read from, and the device's local config decides which URL
prefixes it will read from at all.
"""

from __future__ import annotations

__all__ = ["FileOffer", "ModelOffer", "ModelUpdates", "UpdateResult", "UpdateState"]

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from edge_app.domain import ModelRef

_URL = r"^https?://[^\s]{1,2000}$"
_SHA256 = r"^[0-9a-f]{64}$"


class FileOffer(BaseModel):
    """One file to fetch: where, and exactly which bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=_URL, description="http(s) URL to download from.")
    sha256: str = Field(pattern=_SHA256, description="Hex sha256 of the file.")
    size: int = Field(gt=0, description="File size, bytes.")


class ModelOffer(FileOffer):
    """A model to fetch and run: the file, the registry name and version it becomes, and
    optionally its label file (without one, the model's embedded labels, or else the running
    model's labels, are used)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Registry model name.")
    version: str = Field(pattern=r"^[A-Za-z0-9_.+-]{1,32}$", description="Registry version.")
    labels: FileOffer | None = Field(None, description="The label file, if any.")

    @property
    def ref(self) -> str:
        """``NAME@VERSION``, as a config names a registry entry."""
        return f"{self.name}@{self.version}"


class UpdateState(StrEnum):
    SWITCHED = "switched"
    """The offered model passed every check and runs now."""
    UNCHANGED = "unchanged"
    """The offered model was already running; nothing was done."""
    REJECTED = "rejected"
    """A check failed before the switch (download, hash, size, load, invoke, agreement); the
    running model never stopped."""
    ROLLED_BACK = "rolled_back"
    """The switch happened, the new model then failed its health watch, and the previous
    model runs again."""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """The outcome of one offer. ``model`` is what runs afterwards; ``reason`` says why for
    anything but ``switched``/``unchanged`` (one line, for a job's status reason);
    ``agreement`` is the test run's agreement with the running model (0..1), when measured;
    ``figures`` are timings and counts for reports (e.g. ``download_s``, ``switch_s``)."""

    state: UpdateState
    model: ModelRef
    reason: str = ""
    agreement: float | None = None
    figures: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in (UpdateState.SWITCHED, UpdateState.UNCHANGED)


class ModelUpdates(Protocol):
    """What an offerer (the Jobs agent) needs of the updater."""

    def update(
        self, offer: ModelOffer, *, origin: str, progress: Callable[[str], None] | None = None
    ) -> UpdateResult:
        """Fetch, check and switch to ``offer``; blocks until done and never raises for a bad
        offer (the result says what failed). ``origin`` names who asked (``job:<id>``) for
        logs and audit; ``progress`` gets one-line stage notes (``downloading 40%``)."""
        ...
