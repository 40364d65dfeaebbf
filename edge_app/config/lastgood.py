"""The last-good store: the remote overlay last applied, kept across reboots.

One small JSON file under ``data_dir``, mode 0600. It is written atomically
(``edge_app.files.write_atomic``: a unique temp file in the same directory, fsync, rename,
fsync of the directory), so after a power cut it holds either the previous or the new
document, never half of one; a symlink planted at its name or a temp name is never written
through, and one at its name is not read (the overlay is then ignored). On boot with no
network the daemon runs ``local file + last-good overlay`` (``effective_config``).
"""

from __future__ import annotations

__all__ = ["LAST_GOOD_FILE", "LastGood", "LastGoodStore", "effective_config"]

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.config.remote import apply_overlay, config_digest, validate_overlay
from edge_app.config.schema import AppConfig
from edge_app.errors import ConfigError, FieldError
from edge_app.files import private_dir, read_nofollow, write_atomic

log = logging.getLogger(__name__)

LAST_GOOD_FILE = "remote-config.json"
"""File name of the last-good overlay inside ``data_dir``."""


@dataclass(frozen=True, slots=True)
class LastGood:
    """An applied overlay: the desired document, its shadow ``version`` and config digest."""

    desired: dict[str, Any]
    version: int
    digest: str


class LastGoodStore:
    """Reads and atomically replaces ``<data_dir>/remote-config.json``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LAST_GOOD_FILE

    def load(self) -> LastGood | None:
        """The stored overlay, or None if there is none. A damaged file is logged and ignored
        (the local file alone is then used) rather than stopping the device from booting."""
        try:
            doc = json.loads(read_nofollow(self.path))
            return LastGood(dict(doc["desired"]), int(doc["version"]), str(doc["digest"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring last-good config %s: %s", self.path, exc)
            return None

    def save(self, last: LastGood) -> None:
        """Replace the stored overlay atomically. Raises ``ConfigError`` if the disk fails."""
        body = json.dumps(
            {"version": last.version, "digest": last.digest, "desired": last.desired},
            sort_keys=True,
            indent=1,
        ).encode()
        try:
            write_atomic(private_dir(self.path.parent) / self.path.name, body)
        except OSError as exc:
            raise ConfigError(
                str(self.path), [FieldError("", f"cannot write last-good config: {exc}")]
            ) from exc


def effective_config(
    local: AppConfig, store: LastGoodStore, models: Collection[str]
) -> tuple[AppConfig, LastGood | None]:
    """``local`` with the last-good overlay applied (its version stamped), and that overlay.

    An overlay that no longer fits the local file (e.g. a camera was renamed there) is logged
    and skipped: the local file wins, and the next shadow ``get`` settles the rest.
    """
    last = store.load()
    if last is None:
        return local, None
    try:
        overlay, _ = validate_overlay(last.desired, local, models)
        config = apply_overlay(local, overlay, version=last.version)
    except (ConfigError, ValueError) as exc:
        log.warning(
            "last-good config v%d does not fit the local file, ignored: %s", last.version, exc
        )
        return local, None
    if config_digest(config) != last.digest:
        # the local file changed under the overlay: still valid, but not what was reported
        log.info("local file changed since last-good v%d was applied", last.version)
    return config, last
