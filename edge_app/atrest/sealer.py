"""``Sealer``: AES-256-GCM for items stored on the device (event bodies, snapshot and clip files).

A sealed item is self-describing, so one store can hold plain items (written before encryption
was turned on) beside sealed ones, and a tool can tell them apart::

    b"EAS1" | key id (4 bytes) | nonce (12 bytes, random) | ciphertext | GCM tag (16 bytes)

``EAS1`` is the magic and format version ("edge-app sealed, format 1"). The key id is the first
4 bytes of ``sha256("edge-app/key-id\\0" + key)``: it tells a wrong key from an altered item and
reveals nothing usable about the key. The associated data is the 20-byte header plus the item's
*context*, chosen by the caller to bind the ciphertext to where it belongs (the outbox uses the
event id, files their name): an item copied over another row or renamed over another file does
not decrypt. Overhead: 36 bytes per item.

Nonces are random, so one key should seal fewer than 2**32 items (NIST SP 800-38D); at 100,000
items a day that is more than a century.

``cryptography`` is imported when a ``Sealer`` is built, so installs without encryption do not
need it (it is the ``edge-app[encryption]`` extra).
"""

from __future__ import annotations

__all__ = [
    "HEADER_BYTES",
    "MAGIC",
    "OVERHEAD_BYTES",
    "Sealer",
    "is_sealed",
    "key_id",
    "sealed_key_id",
]

import hashlib
import os
from typing import TYPE_CHECKING

from edge_app.errors import EncryptionError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"EAS1"
KEY_BYTES = 32
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12
_TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
OVERHEAD_BYTES = HEADER_BYTES + _TAG_BYTES
"""Bytes a sealed item has beyond its clear content."""
_INSTALL = "pip install 'edge-app[encryption]' (the cryptography package)"


def key_id(key: bytes) -> str:
    """The 8-hex-digit id of ``key``, as messages and ``edge-app keys`` show it."""
    return _key_id_bytes(key).hex()


def _key_id_bytes(key: bytes) -> bytes:
    return hashlib.sha256(b"edge-app/key-id\0" + key).digest()[:_KEY_ID_BYTES]


def is_sealed(data: bytes | str) -> bool:
    """True if ``data`` is a sealed item (of any format version this code knows)."""
    return isinstance(data, bytes) and data[: len(MAGIC)] == MAGIC


def sealed_key_id(data: bytes | str) -> str | None:
    """The id of the key that sealed ``data`` (from its header), or None if it is not sealed."""
    if not is_sealed(data) or len(data) < HEADER_BYTES:
        return None
    assert isinstance(data, bytes)  # is_sealed says so
    return data[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES].hex()


class Sealer:
    """Seals and opens items with one 32-byte key. Thread-safe: nothing changes after init, and
    cryptography's AEAD objects keep no state between calls (pyca/cryptography#9110), so the
    camera threads, the clip writer and the drain share one.

    ``seal_new`` says whether writers seal what they write from now on (``encryption.enabled``);
    readers open sealed items either way, so turning encryption off loses nothing stored
    earlier. ``source`` names where the key came from (a file, a systemd credential) for
    messages; the key itself is never shown, logged or kept anywhere but in the cipher.
    """

    __slots__ = ("_aead", "_id", "_invalid", "seal_new", "source")

    def __init__(self, key: bytes, *, seal_new: bool = True, source: str = "the key") -> None:
        if len(key) != KEY_BYTES:
            raise EncryptionError(
                f"{source} holds {len(key)} bytes; an AES-256 key is {KEY_BYTES} bytes "
                "(make one with `edge-app keys generate FILE`)"
            )
        try:
            # optional [encryption] extra, loaded only when a key is configured
            from cryptography.exceptions import InvalidTag  # noqa: PLC0415
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415
        except ImportError as exc:
            raise EncryptionError(f"encryption at rest needs {_INSTALL}") from exc
        self._aead: AESGCM = AESGCM(key)
        self._invalid = InvalidTag
        self._id = _key_id_bytes(key)
        self.seal_new = seal_new
        self.source = source

    @property
    def key_id(self) -> str:
        """This key's id (8 hex digits), safe to show."""
        return self._id.hex()

    def __repr__(self) -> str:
        return f"Sealer(key id {self.key_id}, {self.source}, seal_new={self.seal_new})"

    def seal(self, data: bytes, context: bytes) -> bytes:
        """``data`` sealed, bound to ``context`` (which ``open`` must be given again)."""
        header = MAGIC + self._id + os.urandom(_NONCE_BYTES)
        return header + self._aead.encrypt(header[-_NONCE_BYTES:], data, header + context)

    def open(self, sealed: bytes, context: bytes, *, what: str = "item") -> bytes:
        """The clear bytes of ``sealed``; ``EncryptionError`` naming ``what`` if it is not a
        sealed item, was sealed with another key, or was altered or moved (wrong ``context``)."""
        if not is_sealed(sealed):
            raise EncryptionError(f"{what} is not sealed in a format this edge-app knows")
        if len(sealed) < OVERHEAD_BYTES:
            raise EncryptionError(f"{what} is truncated ({len(sealed)} bytes)")
        header = sealed[:HEADER_BYTES]
        stored_id = header[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES]
        if stored_id != self._id:
            raise EncryptionError(
                f"{what} was encrypted with key id {stored_id.hex()}, not with {self.source} "
                f"(key id {self.key_id}): use the key it was written with"
            )
        try:
            return self._aead.decrypt(
                header[-_NONCE_BYTES:], sealed[HEADER_BYTES:], header + context
            )
        except self._invalid as exc:
            raise EncryptionError(
                f"{what} fails authentication with the right key: it was altered, truncated "
                "or moved from another row or file"
            ) from exc
