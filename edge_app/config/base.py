"""What every config section shares: the strict base model and the name patterns."""

from __future__ import annotations

__all__ = ["HHMM", "NAME", "THING_NAME", "Model", "Point"]

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9_.-]{1,64}$"
"""Names of cameras, zones and rules: they end up in topics, file names and metric dimensions."""
HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
THING_NAME = r"^[A-Za-z0-9_:-]{1,128}$"
"""An AWS IoT thing name."""
Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
"""A point in normalised image coordinates (0..1, origin top left)."""


class Model(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a config file must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
