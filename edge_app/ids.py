"""ULIDs: 128-bit ids that sort by creation time (48-bit ms timestamp + 80 random bits)."""

from __future__ import annotations

__all__ = ["new_ulid"]

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def new_ulid(wall_seconds: float | None = None) -> str:
    """A new 26-character ULID; ``wall_seconds`` (Unix epoch) defaults to now."""
    ms = int((time.time() if wall_seconds is None else wall_seconds) * 1000)
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
