"""What every config section shares: the strict base model, the name patterns, file paths."""

from __future__ import annotations

__all__ = ["HHMM", "NAME", "THING_NAME", "FilePath", "Model", "NotPem", "Point", "Url"]

from pathlib import Path, PurePath
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from edge_app.redact import breaks_url, looks_like_pem

NAME = r"^[A-Za-z0-9_.-]{1,64}$"
"""Names of cameras, zones and rules: they end up in topics, file names and metric dimensions."""
HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
THING_NAME = r"^[A-Za-z0-9_:-]{1,128}$"
"""An AWS IoT thing name."""
Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
"""A point in normalised image coordinates (0..1, origin top left)."""


def _refuse_pem(value: object) -> object:
    # A key pasted where its path belongs would otherwise end up in paths, errors and output;
    # the message never repeats the value.
    if isinstance(value, str | PurePath) and looks_like_pem(str(value)):
        raise ValueError(
            "holds PEM text (a key or certificate), not a file path: save the text in a file "
            "(chmod 600 for a private key) and give that file's path here"
        )
    return value


NotPem = BeforeValidator(_refuse_pem)
"""Refuses PEM text (``-----BEGIN ...``) in a field that names a file."""
FilePath = Annotated[Path, NotPem]
"""The type of every config field holding a file or directory path (``FilePath | None`` if
optional): PEM text pasted into one is refused with a message asking for the file's path."""


def _url_in_one_piece(value: str) -> str:
    # Output redaction finds a URL in running text up to such a character: a password
    # holding one would be shown from there on. Percent-encoded, it is the same URL.
    if breaks_url(value):
        raise ValueError(
            'holds a space, ", <, >, a backtick or a backslash: percent-encode it in the URL '
            '(%20 for a space, %22 for ", %3C for <, %3E for >, %60 for `, %5C for \\)'
        )
    return value


Url = Annotated[str, AfterValidator(_url_in_one_piece)]
"""The type of every config field holding a URL (``Url | None`` if optional): one without
spaces, double quotes, angle brackets, backticks or backslashes, so its secrets are always
found and hidden in output."""


class Model(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a config file must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
