"""The documents of the AWS IoT Jobs this device runs, and the ``statusDetails`` it reports.

Two operations exist, each a pydantic model with extra keys forbidden:

    {"operation": "model-update", "model": <ModelOffer>}       fetch, check and run a model
    {"operation": "config", "desired": {<remote overlay>}}      lay a config overlay over the file

``parse_job_document`` takes the ``jobDocument`` of an execution (a JSON object, as AWS sends
it) and returns one of them, or raises ``JobDocumentError`` with a one-line reason the job's
status reports. The caps are AWS's: a job document is at most 32 KB; a config overlay must also
fit the ``edge-config`` shadow that records it (8 KB for desired and reported together), so it
may take at most ``MAX_OVERLAY_BYTES``.

``status_details`` builds the map AWS accepts (keys ``[a-zA-Z0-9:_-]{1,128}``, values of 1 to
1,024 characters without control characters): whatever text a reason carries, the update is
never refused for its details.
"""

from __future__ import annotations

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_OVERLAY_BYTES",
    "ConfigJob",
    "JobDocumentError",
    "ModelJob",
    "parse_job_document",
    "status_details",
]

import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edge_app.models.offer import ModelOffer
from edge_app.remote.report import clip, encoded_size

MAX_DOCUMENT_BYTES = 32 * 1024
"""Largest job document, bytes of compact JSON (the AWS IoT Jobs limit)."""
MAX_OVERLAY_BYTES = 6 * 1024
"""Largest ``desired`` overlay of a config job, bytes: the shadow keeps it beside the reported
state within its 8 KB."""
DETAIL_MAX_CHARS = 1024
"""Longest ``statusDetails`` value AWS accepts, characters."""

_KEY = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")


class ModelJob(BaseModel):
    """Switch to the offered model (through the device's model updater)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: Literal["model-update"]
    model: ModelOffer = Field(description="The model to fetch, check and run.")


class ConfigJob(BaseModel):
    """Lay ``desired`` over the local config, as the ``edge-config`` shadow's desired state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation: Literal["config"]
    desired: dict[str, Any] = Field(description="A remote overlay (docs/remote-config.md).")


JobDocument = Annotated[ModelJob | ConfigJob, Field(discriminator="operation")]
_ADAPTER: TypeAdapter[ModelJob | ConfigJob] = TypeAdapter(JobDocument)
_OPERATIONS = ("model-update", "config")


class JobDocumentError(ValueError):
    """A job document this device cannot run; ``str()`` is the one-line reason."""


def parse_job_document(document: Any) -> ModelJob | ConfigJob:
    """The job ``document`` as a ``ModelJob`` or ``ConfigJob``; ``JobDocumentError`` saying
    what is wrong for anything else (not an object, too big, unknown operation, bad fields)."""
    if not isinstance(document, dict):
        raise JobDocumentError("the job document must be a JSON object")
    size = encoded_size(document)
    if size > MAX_DOCUMENT_BYTES:
        raise JobDocumentError(
            f"the job document is {size} bytes; at most {MAX_DOCUMENT_BYTES} are accepted"
        )
    operation = document.get("operation")
    if operation not in _OPERATIONS:
        raise JobDocumentError(
            f"unknown operation {clip(str(operation), 64)!r}: this device runs "
            f"{' or '.join(repr(op) for op in _OPERATIONS)} jobs"
        )
    try:
        job = _ADAPTER.validate_python(document)
    except ValidationError as exc:
        raise JobDocumentError(_first_errors(exc)) from None
    if isinstance(job, ConfigJob):
        size = encoded_size(job.desired)
        if size > MAX_OVERLAY_BYTES:
            raise JobDocumentError(
                f"the config overlay is {size} bytes; at most {MAX_OVERLAY_BYTES} fit the "
                "edge-config shadow that records it"
            )
    return job


def _first_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        loc = error["loc"][1:]  # the first is the operation (the discriminator's tag)
        where = ".".join(str(p) for p in loc) or "<document>"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    tail = f" (and {more} more)" if more > 0 else ""
    return "invalid job document: " + "; ".join(parts) + tail


def status_details(details: Mapping[str, str]) -> dict[str, str]:
    """``details`` as AWS accepts them: keys outside the pattern dropped, control characters
    replaced by spaces, values clipped to 1,024 characters, empty values left out."""
    out: dict[str, str] = {}
    for key, value in details.items():
        if not _KEY.match(key):
            continue
        text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in value)
        text = text.strip()
        if len(text) > DETAIL_MAX_CHARS:
            half = (DETAIL_MAX_CHARS - 3) // 2
            text = text[:half] + "..." + text[len(text) - half :]
        if text:
            out[key] = text
    return out
