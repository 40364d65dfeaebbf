"""The at-rest key: where it is read from, how it is checked, and how a new one is made.

A key is 32 random bytes, kept either

* in a **key file**: base64 text (what ``edge-app keys generate FILE`` writes, 44 characters and
  a newline) or the 32 raw bytes (``head -c 32 /dev/urandom``); the file must not be readable
  or writable by group or others (``chmod 600``), or it is refused; or
* as a **systemd credential** (``LoadCredential=NAME:/path`` or ``LoadCredentialEncrypted=``
  in the unit), read from ``$CREDENTIALS_DIRECTORY/NAME``; systemd keeps that directory private
  to the service (it may use an ACL, so only access by others is refused there).

Keys are never taken from the network (the remote overlay has no such field), never logged
and never printed; messages name a key by its source and its key id.
"""

from __future__ import annotations

__all__ = [
    "ENCODED_KEY_CHARS",
    "credential_path",
    "generate_key_file",
    "load_sealer",
    "looks_like_key",
    "read_key_file",
]

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from edge_app.atrest.sealer import KEY_BYTES, Sealer, key_id
from edge_app.errors import EncryptionError
from edge_app.files import write_atomic

ENCODED_KEY_CHARS = 44
"""Length of a base64-encoded 32-byte key, padding included."""
_MAX_FILE_BYTES = 1024  # a key file is 32 or ~45 bytes; anything larger is not one


def read_key_file(path: Path, *, private_to: int = 0o077, what: str = "key file") -> bytes:
    """The 32-byte key in ``path`` (base64 text or raw). Refuses a file whose mode grants any
    of ``private_to`` (default: any access by group or others) with ``EncryptionError``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise EncryptionError(
            f"cannot read the {what} {path}: {exc.strerror}; check the path and that edge-app's "
            "user may read it"
        ) from exc
    try:
        info = os.fstat(fd)  # of the file opened, not of a path that may change meanwhile
        if not stat.S_ISREG(info.st_mode):
            raise EncryptionError(f"the {what} {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & private_to:
            raise EncryptionError(
                f"the {what} {path} has mode {mode:04o}: group or others may access it, so it "
                f"is refused; run `chmod 600 {path}` (and keep it owned by edge-app's user)"
            )
        data = os.read(fd, _MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise EncryptionError(f"cannot read the {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return _decode(data, f"the {what} {path}")


def _base64_key(text: bytes) -> bytes | None:
    """The key ``text`` (surrounding whitespace ignored) encodes in base64, or None."""
    text = text.strip()
    if len(text) != ENCODED_KEY_CHARS:
        return None
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    return key if len(key) == KEY_BYTES else None


def looks_like_key(text: str) -> bool:
    """True if ``text`` is itself a key as a key file holds it (44 base64 characters of 32
    bytes), not the path of one: the config refuses that in ``encryption.key_file``."""
    return text.isascii() and _base64_key(text.encode()) is not None


def _decode(data: bytes, source: str) -> bytes:
    if len(data) == KEY_BYTES:
        return data  # raw: 32 bytes can never be base64 of 32 bytes (44 characters)
    key = _base64_key(data)
    if key is not None:
        return key
    raise EncryptionError(
        f"{source} is not a key: it must hold {KEY_BYTES} bytes, raw or base64 "
        f"({ENCODED_KEY_CHARS} characters); make one with `edge-app keys generate FILE`"
    )


def credential_path(name: str, environ: Mapping[str, str] = os.environ) -> Path:
    """``$CREDENTIALS_DIRECTORY/name``: where systemd puts the credential ``name``."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if not folder:
        raise EncryptionError(
            f"encryption.credential {name!r}: $CREDENTIALS_DIRECTORY is not set; only a "
            f"systemd service with `LoadCredential={name}:/path/to/key` has it (elsewhere, "
            "e.g. for `edge-app outbox`, pass the key file with --key FILE)"
        )
    return Path(folder) / name


def load_sealer(
    key_file: Path | None,
    credential: str | None,
    *,
    seal_new: bool,
    environ: Mapping[str, str] = os.environ,
) -> Sealer | None:
    """The ``Sealer`` of the key in ``key_file`` or the systemd credential ``credential``
    (``encryption`` in the config); ``None`` when neither is set. ``seal_new``: encrypt what
    is written from now on (``encryption.enabled``), else only read sealed items."""
    if key_file is not None:
        return Sealer(read_key_file(key_file), seal_new=seal_new, source=f"key file {key_file}")
    if credential is not None:
        path = credential_path(credential, environ)
        key = read_key_file(path, private_to=0o007, what="systemd credential")
        return Sealer(key, seal_new=seal_new, source=f"systemd credential {credential}")
    if seal_new:
        raise EncryptionError(
            "encryption.enabled needs a key: set encryption.key_file or encryption.credential"
        )
    return None


def generate_key_file(path: Path) -> str:
    """Write a new random key to ``path`` (base64 and a newline, mode 0600) and return its key
    id. Written like every private file (``edge_app.files.write_atomic``: a hidden temp file,
    fsync, then put in place, folder fsync'd), so it is whole or absent after a crash, and in
    place for good before anything is sealed with it. Never overwrites: an existing file (or
    symlink) raises ``EncryptionError``, since data sealed with the key it holds would become
    unreadable."""
    key = os.urandom(KEY_BYTES)
    try:
        write_atomic(path, base64.b64encode(key) + b"\n", exclusive=True)
    except FileExistsError as exc:
        raise EncryptionError(
            f"{path} exists: a key file is never overwritten (what it encrypted would be lost); "
            "choose another name, or remove it yourself if it protects nothing"
        ) from exc
    except OSError as exc:
        raise EncryptionError(f"cannot create the key file {path}: {exc.strerror}") from exc
    return key_id(key)
