"""Remote configuration overlay: what the cloud may change, and how a change is validated.

A *desired* document (from the AWS IoT named shadow ``edge-config``) is an overlay on the local
file. Only fields that are safe to set over the air exist in the overlay models, and every one
of them takes its type, bounds and description from the ``AppConfig`` field it overrides, so
``schema.py`` stays the one source of truth. The overlay models forbid other keys: certificates,
the broker address, file paths and anything that would run a command cannot be named at all.

Validation runs in three steps and reports every problem at once, as ``FieldError`` paths into
the desired document:

1. bytes: at most ``MAX_PAYLOAD_BYTES`` (the shadow service's document limit), UTF-8 JSON,
   nesting at most ``MAX_DEPTH`` levels (counted on the text, before the parser recurses), no
   NaN/Infinity, no key twice in one object;
2. shape: the overlay models (extra keys rejected, each with the reason); they derive from
   the schema's ``Model``, so floats must be finite (``1e999`` parses as inf) and no NUL;
3. whole config: the overlay merged into the local config and validated as an ``AppConfig``,
   so cross-field checks (zones inside 0..1, rule references to cameras and zones) are the
   same as for the file; a model must be one of the manifest's names or an approved
   registry ``NAME@VERSION``, never a path.
"""

from __future__ import annotations

__all__ = [
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "REMOTE_FIELDS",
    "RemoteOverlay",
    "apply_overlay",
    "config_digest",
    "merge_delta",
    "parse_payload",
    "validate_overlay",
]

import copy
import hashlib
import json
import re
from collections.abc import Collection, Mapping
from typing import Any, Optional

from pydantic import BaseModel, Field, ValidationError, create_model

from edge_app.config.base import Model
from edge_app.config.loader import error_path, field_error, field_errors
from edge_app.config.schema import (
    AppConfig,
    BatchConfig,
    CameraConfig,
    DetectorConfig,
    RuleConfig,
    UplinkConfig,
)
from edge_app.errors import ConfigError, FieldError

_SOURCE = "shadow desired state"

MAX_PAYLOAD_BYTES = 8 * 1024
"""Largest desired document accepted, bytes (the AWS IoT shadow state limit is 8 KB)."""

MAX_DEPTH = 8
"""Deepest nesting of objects and arrays accepted in a desired document."""

_LOCAL_ONLY = (
    "it can only be changed in the local config file (certificates, broker address, file "
    "paths and commands are never taken from the network)"
)


def _partial(model: type[BaseModel], fields: tuple[str, ...], name: str) -> type[BaseModel]:
    """An all-optional copy of ``fields`` of ``model``: same types, bounds and descriptions."""
    definitions: dict[str, Any] = {}
    for field in fields:
        info = copy.copy(model.model_fields[field])
        info.default = None
        info.default_factory = None
        definitions[field] = (Optional[info.annotation], info)  # noqa: UP045  # runtime type
    return create_model(name, __base__=Model, **definitions)


RemoteDetector = _partial(DetectorConfig, ("model", "score_threshold"), "RemoteDetector")
RemoteCamera = _partial(CameraConfig, ("fps", "zones"), "RemoteCamera")
RemoteBatch = _partial(BatchConfig, ("max_events", "max_bytes", "max_wait_s"), "RemoteBatch")


class RemoteUplink(Model):
    batch: RemoteBatch | None = Field(  # type: ignore[valid-type]
        None, description=UplinkConfig.model_fields["batch"].description
    )


class RemoteOverlay(Model):
    """The remotely settable part of ``AppConfig``; every field optional (absent: keep)."""

    detector: RemoteDetector | None = Field(  # type: ignore[valid-type]
        None,
        description="Score threshold and model (a manifest name or an approved registry "
        "NAME@VERSION, never a path).",
    )
    cameras: dict[str, RemoteCamera] | None = Field(  # type: ignore[valid-type]
        None, description="Per existing camera, by name: fps and zones."
    )
    rules: list[RuleConfig] | None = Field(
        None, description="The complete rule list (replaces the local one), review bands included."
    )
    uplink: RemoteUplink | None = Field(None, description="Event batching.")


REMOTE_FIELDS: tuple[str, ...] = (
    "detector.model",
    "detector.score_threshold",
    "cameras.<name>.fps",
    "cameras.<name>.zones",
    "rules",
    "uplink.batch.max_events",
    "uplink.batch.max_bytes",
    "uplink.batch.max_wait_s",
)
"""Dotted paths a desired document may set; everything else is refused."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


# A JSON string (escapes included) and the brackets that nest: what is left of a payload
# once its strings are blanked out says how deep it nests, without parsing it.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """Deepest nesting of objects/arrays in JSON ``text``, counted on the text (linear, no
    recursion), so an over-deep payload is refused before ``json`` recurses into it."""
    deepest = level = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        level += 1 if match.group() in "[{" else -1
        deepest = max(deepest, level)
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The shadow service builds every delta itself and never repeats a key, so a repeated key
    # means a forged or broken sender; parsers disagree on which value wins (first, last), so
    # what the console shows and what the device would apply could differ: refuse instead.
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"duplicate key {key!r} in one object; give each key once")
        doc[key] = value
    return doc


def parse_payload(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Decode one MQTT payload as JSON within the size and depth limits.

    Raises ``ConfigError`` saying what is wrong (too big, not UTF-8 JSON, too deep, a key
    repeated in one object).
    """
    if len(payload) > max_bytes:
        why = f"payload is {len(payload)} bytes; at most {max_bytes} are accepted"
        raise ConfigError(_SOURCE, [FieldError("", why)])
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        why = f"payload is not UTF-8: byte 0x{payload[exc.start]:02x} at offset {exc.start}"
        raise ConfigError(_SOURCE, [FieldError("", why)]) from exc
    limit = MAX_DEPTH + 3  # + the shadow envelope: state / desired / ...
    if _depth(text) > limit:
        raise ConfigError(_SOURCE, [FieldError("", f"payload nests deeper than {limit} levels")])
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ConfigError(_SOURCE, [FieldError("", f"payload is not valid JSON: {exc}")]) from exc


def merge_delta(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge a shadow delta into a desired document: objects merge, other values
    (arrays included) replace, ``null`` removes the key (AWS shadow semantics). No mutation."""
    merged = copy.deepcopy(dict(base))
    for key, value in delta.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_delta(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _shape_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(error_path(err["loc"]), f"not remotely settable: {_LOCAL_ONLY}")
        if err["type"] == "extra_forbidden"
        else field_error(err)
        for err in exc.errors()
    ]


def validate_overlay(
    desired: Any, base: AppConfig, models: Collection[str]
) -> tuple[RemoteOverlay, AppConfig]:
    """Check a desired document against ``base`` (the local config).

    ``models`` are the models that may be chosen: the manifest's names and the registry's
    approved ``NAME@VERSION`` entries (``edge_app.models.RemoteChoices``). Returns
    the overlay and the effective config it gives; raises ``ConfigError`` naming every
    invalid field. ``version`` is left as in ``base``.
    """
    if not isinstance(desired, dict):
        raise ConfigError(_SOURCE, [FieldError("", "desired state must be a JSON object")])
    try:
        overlay = RemoteOverlay.model_validate(desired)
    except ValidationError as exc:
        raise ConfigError(_SOURCE, _shape_errors(exc)) from exc
    errors: list[FieldError] = []
    model = overlay.detector.model if overlay.detector is not None else None
    if model is not None and model not in models:
        errors.append(
            FieldError(
                "detector.model",
                f"{model!r} is not a manifest model nor an approved registry model (approve "
                "a registered one with `edge-app models approve NAME VERSION`); "
                f"choose one of {sorted(models)}",
            )
        )
    cameras = {c.name for c in base.cameras}
    errors.extend(
        FieldError(
            error_path(("cameras", name)), f"no camera named {name!r}; cameras: {sorted(cameras)}"
        )
        for name in (overlay.cameras or {})
        if name not in cameras
    )
    if errors:
        raise ConfigError(_SOURCE, errors)
    try:
        effective = apply_overlay(base, overlay)
    except ValidationError as exc:
        errors = field_errors(exc)
        raise ConfigError(_SOURCE, errors) from exc
    return overlay, effective


def apply_overlay(base: AppConfig, overlay: RemoteOverlay, version: int | None = None) -> AppConfig:
    """``base`` with ``overlay`` laid over it, validated as a whole ``AppConfig``.

    Raises pydantic's ``ValidationError`` (cross-field checks) if the result is invalid.
    """
    doc = base.model_dump()
    if overlay.detector is not None:
        doc["detector"].update(overlay.detector.model_dump(exclude_none=True))
    for camera in doc["cameras"]:
        change = (overlay.cameras or {}).get(camera["name"])
        if change is not None:
            camera.update(change.model_dump(exclude_none=True))
    if overlay.rules is not None:
        doc["rules"] = [rule.model_dump() for rule in overlay.rules]
    if overlay.uplink is not None and overlay.uplink.batch is not None:
        doc["uplink"]["batch"].update(overlay.uplink.batch.model_dump(exclude_none=True))
    if version is not None:
        doc["version"] = version
    return AppConfig.model_validate(doc)


def config_digest(config: AppConfig) -> str:
    """sha256 (first 16 hex digits) of the config's canonical JSON, ``version`` left out, so
    two devices running the same settings report the same digest."""
    doc = config.model_dump(mode="json", exclude={"version"})
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
