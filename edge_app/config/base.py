"""What every config section shares: the strict base model, the name types and their checks,
file paths and URLs.

Every section derives from ``Model``, so the rules below hold for every field of the tree
(and of the remote overlay) without being repeated per field: unknown keys are errors, floats
must be finite (``NaN``/``inf`` are refused with "must be a finite number"), and no string or
path may hold a NUL character (the OS refuses such paths only later, with a traceback). Every
path field is a ``FilePath`` (PEM text pasted into one is refused) and every URL field a
``Url`` (one that output redaction can always find whole).
"""

from __future__ import annotations

__all__ = [
    "HHMM",
    "NAME",
    "THING_NAME",
    "FieldCheckError",
    "FilePath",
    "Model",
    "MqttText",
    "Name",
    "NotPem",
    "Point",
    "Url",
    "check_mqtt_text",
    "refuse_repeats",
]

from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

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


class FieldCheckError(ValueError):
    """A check of a whole model failed at ``path``, a field below that model (e.g.
    ``("rules", 2, "zone")``); ``loader.field_errors`` appends it to the model's location, so
    the error names the field instead of the model holding it."""

    def __init__(self, path: Iterable[str | int], message: str) -> None:
        super().__init__(message)
        self.path = tuple(path)
        self.message = message


def refuse_repeats(names: Iterable[str], what: str, *prefix: str | int) -> None:
    """``FieldCheckError`` at ``<prefix>.<i>.name`` for the first name that repeats."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise FieldCheckError(
                [*prefix, i, "name"], f"{what} names must be unique: {name!r} repeats"
            )
        seen.add(name)


def _not_dots(name: str) -> str:
    # "." and ".." pass the pattern but are folders of their own: a camera named ".." would
    # write its snapshots and clips beside snapshots/ and clips/ instead of inside them.
    if set(name) == {"."}:
        raise ValueError(f"must not be {name!r}: names become folder names; use letters or digits")
    return name


Name = Annotated[str, Field(pattern=NAME), AfterValidator(_not_dots)]
"""A camera, zone or rule name: 1-64 of ``A-Z a-z 0-9 _ . -`` and not only dots."""


def check_mqtt_text(value: str) -> str:
    """``value`` if it can be part of an MQTT topic or client id, else ``ValueError``: no
    wildcards (``+``, ``#``), no NUL and no other control characters (MQTT 5, 1.5.4)."""
    wildcards = sorted({c for c in value if c in "+#"})
    if wildcards:
        raise ValueError(
            f"must not contain the MQTT wildcard(s) {' '.join(wildcards)}: they are only "
            "allowed in subscriptions"
        )
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValueError("must not contain NUL or other control characters")
    return value


MqttText = Annotated[str, AfterValidator(check_mqtt_text)]
"""Text that becomes part of an MQTT topic or is the client id."""


def _has_nul(value: Any) -> bool:
    if isinstance(value, str | PurePath):
        return "\0" in str(value)
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


class Model(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a config file must not pass silently.
    Floats must be finite; strings and paths must not hold NUL (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain a NUL character")
        return value
