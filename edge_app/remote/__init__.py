"""Remote configuration over the AWS IoT named shadow ``edge-config``: decide, apply, report."""

from edge_app.remote.handler import (
    Applier,
    AuditSink,
    ConfigChange,
    Kind,
    Outcome,
    ShadowHandler,
)
from edge_app.remote.shadow import SHADOW_NAME, ShadowClient, ShadowTopics

__all__ = [
    "SHADOW_NAME",
    "Applier",
    "AuditSink",
    "ConfigChange",
    "Kind",
    "Outcome",
    "ShadowClient",
    "ShadowHandler",
    "ShadowTopics",
]
