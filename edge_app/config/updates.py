"""Settings of over-the-air model updates (``edge_app.updates``): local only.

The section is not part of the remote overlay (``remote.py`` names what the cloud may set),
so the network can never widen where the device downloads from nor loosen its checks: an
offer (an AWS IoT Job) names a URL, and only a URL under one of ``allowed_urls`` is read.
"""

from __future__ import annotations

__all__ = ["ModelUpdatesConfig"]

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edge_app.config.base import Model


class ModelUpdatesConfig(Model):
    allowed_urls: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="URL prefixes a model may be downloaded from (each scheme://host/..., "
        "ending in '/'); none: every offer is refused. https only, unless a prefix itself "
        "says http://.",
    )
    max_bytes: int = Field(
        200_000_000, ge=1024, description="Largest model (or label) file accepted, bytes."
    )
    bandwidth_bytes_per_s: int | None = Field(
        None, ge=1024, description="Download speed cap, bytes per second; null: uncapped."
    )
    timeout_s: float = Field(
        30.0, gt=0, le=600, description="Connect and read timeout of each download request."
    )
    retries: int = Field(
        5, ge=0, le=100, description="Resumes (HTTP Range) after a dropped connection."
    )
    agreement_floor: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Least detection agreement (F1 of boxes matched by IoU and label, 0..1) "
        "of the new model with the running one on recent frames; below it the offer is "
        "rejected.",
    )
    test_frames: int = Field(
        8, ge=1, le=64, description="Recent frames (per device) the new model is tested on."
    )
    sample_every_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="How often each camera keeps a frame for the test run (a reference, no copy).",
    )
    watch_frames: int = Field(
        30,
        ge=0,
        le=100_000,
        description="Frames after the switch on which the new model must not fail; a "
        "failure switches back to the previous model.",
    )
    watch_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Longest health watch; a watch that sees fewer frames by then passes.",
    )

    @field_validator("allowed_urls")
    @classmethod
    def _prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            parts = urlsplit(prefix)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError(f"{prefix!r}: give an https://host/... URL prefix")
            if not parts.path.endswith("/") or parts.query or parts.fragment:
                # "https://models.example.com" would also allow models.example.com.evil.net
                raise ValueError(f"{prefix!r}: a prefix must end with '/' (e.g. {prefix}/)")
        return prefixes

    def allows(self, url: str) -> bool:
        """Whether ``url`` is under one of the prefixes (scheme and host compared exactly)."""
        return any(url.startswith(prefix) for prefix in self.allowed_urls)
