"""Encryption at rest (optional): AES-256-GCM sealing of event bodies and snapshot/clip files,
and the key it uses (a 0600 key file or a systemd credential; never set remotely)."""

from edge_app.atrest.files import SEALED_SUFFIX, read_stored, sealed_file, sealed_name
from edge_app.atrest.keys import (
    ENCODED_KEY_CHARS,
    credential_path,
    generate_key_file,
    load_sealer,
    looks_like_key,
    read_key_file,
)
from edge_app.atrest.sealer import OVERHEAD_BYTES, Sealer, is_sealed, key_id, sealed_key_id

__all__ = [
    "ENCODED_KEY_CHARS",
    "OVERHEAD_BYTES",
    "SEALED_SUFFIX",
    "Sealer",
    "credential_path",
    "generate_key_file",
    "is_sealed",
    "key_id",
    "load_sealer",
    "looks_like_key",
    "read_key_file",
    "read_stored",
    "sealed_file",
    "sealed_key_id",
    "sealed_name",
]
