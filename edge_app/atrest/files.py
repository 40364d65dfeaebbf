"""Sealed files: a snapshot or clip stored encrypted lies beside its clear name, plus ``.enc``.

Events and lanes keep naming the clear file (``dock/2026-11-26/<id>.jpg``, ``<id>.mp4``): the
name is what the event contract carries, and its ``sha256``/``bytes`` are of the clear JPEG
(what the cloud receives). On disk an encrypted one is ``<name>.enc`` and starts with the
``Sealer`` magic, so tools can tell by the suffix and by the header. The file's clear name is
its sealing context: a sealed file renamed over another event's does not decrypt.

Writers seal bytes before they write them (``sealed_file``); readers go through ``read_stored``,
which opens whichever form exists, so files written before encryption was turned on (or after
it was turned off) are read as they are.
"""

from __future__ import annotations

__all__ = ["SEALED_SUFFIX", "read_stored", "sealed_file", "sealed_name"]

from pathlib import Path

from edge_app.atrest.sealer import Sealer
from edge_app.errors import EncryptionError

SEALED_SUFFIX = ".enc"


def sealed_name(path: Path) -> Path:
    """Where the file with clear name ``path`` lies when it is sealed: ``<path>.enc``."""
    return path.with_name(path.name + SEALED_SUFFIX)


def _context(clear_name: str) -> bytes:
    return b"edge-app/file\0" + clear_name.encode()


def sealed_file(sealer: Sealer | None, path: Path, data: bytes) -> tuple[Path, bytes]:
    """The path and bytes to write for the clear file ``path`` holding ``data``: ``path`` and
    ``data`` as they are without a sealer (or one that only reads), else the sealed pair."""
    if sealer is None or not sealer.seal_new:
        return path, data
    return sealed_name(path), sealer.seal(data, _context(path.name))


def read_stored(path: Path, sealer: Sealer | None) -> bytes:
    """The clear bytes of the file stored under the clear name ``path``: ``<path>.enc``
    decrypted if it exists, else ``path`` as it is (``FileNotFoundError`` if neither).
    ``EncryptionError`` if it is sealed and ``sealer`` is missing or cannot open it."""
    sealed = sealed_name(path)
    try:
        data = sealed.read_bytes()
    except FileNotFoundError:
        return path.read_bytes()
    if sealer is None:
        raise EncryptionError(
            f"{sealed} is encrypted and no key is configured: set encryption.key_file "
            "(or encryption.credential) to the key it was written with"
        )
    return sealer.open(data, _context(path.name), what=str(sealed))
