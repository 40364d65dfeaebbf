"""Private files on disk: atomic writes, 0600 files, 0700 folders, whatever the umask.

The data directory holds images of people (snapshots, clips), the outbox and the remote
config, so every file edge_app creates there is ``0600`` and every folder ``0700``, set
explicitly (``fchmod``/``chmod`` after creation) so that a permissive umask changes nothing.

``write_atomic`` / ``atomic_writer`` replace a file so that after a crash or power cut it
holds either the old or the new content, never a mix: a unique temporary file in the same
folder (``O_CREAT | O_EXCL | O_NOFOLLOW``, so a planted file or symlink at that name is never
opened, let alone written through), written, fsync'd, renamed over the target (``rename``
replaces a symlink at the target itself and never writes to what it points at), then the
folder fsync'd so the rename survives power loss. Every step goes through one descriptor of
the folder, so the temp file and the target are always in the same folder even if a path
component is swapped meanwhile. Errors are ``OSError``; callers wrap them in their own
``EdgeAppError`` with advice. This module is the one place that writes files this way (the
last-good config, the seq reservation, snapshots, clips, the model cache, and with
``exclusive=True`` the at-rest key file).

``scratch_file`` is the same private temporary file without the rename: a library writes it
by name, its owner reads it back, and it is removed whatever happens (the clear mp4 of a clip
that is stored encrypted).
"""

from __future__ import annotations

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "AtomicFile",
    "atomic_writer",
    "loose_bits",
    "private_dir",
    "private_file",
    "read_nofollow",
    "scratch_file",
    "write_atomic",
]

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE = 0o600
"""Mode of every file edge_app creates under its data directory."""
PRIVATE_DIR = 0o700
"""Mode of every folder edge_app creates under (and as) its data directory."""

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class AtomicFile:
    """The temporary file of an ``atomic_writer``: write to ``file``, or have a library open
    ``path`` by name (it already exists, 0600, so reopening it keeps that mode)."""

    file: BinaryIO
    path: Path


@contextlib.contextmanager
def atomic_writer(
    path: Path, *, mode: int = PRIVATE_FILE, sync_folder: bool = True, exclusive: bool = False
) -> Iterator[AtomicFile]:
    """Replace ``path`` atomically with what is written inside the ``with`` block.

    The temporary file ``.<stem>.<random>.tmp<suffix>`` (hidden, and keeping the suffix so
    that a library choosing a format by extension, such as OpenCV's video writer, still can)
    is created in ``path``'s folder with ``mode``; on leaving the block normally it is
    fsync'd and renamed to ``path`` and the folder fsync'd. On an exception it is removed and
    ``path`` is untouched. The folder must exist. Raises ``OSError``.

    ``sync_folder=False`` leaves the folder's fsync to a later write into the same folder:
    one folder fsync makes every rename before it durable, so files written as a set (an
    event's three snapshot JPEGs) pay for it once, on the last one.

    ``exclusive=True`` never replaces anything at ``path`` (a file, or a symlink, dangling or
    not): the temp file is hard-linked to ``path`` instead of renamed, which fails with
    ``FileExistsError`` if ``path`` exists, and is then removed (a key file, which must never
    be overwritten). The filesystem must support hard links.
    """
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    try:
        name = f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}"
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC,
            mode,
            dir_fd=folder,
        )
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off ``mode``
            with os.fdopen(fd, "wb", closefd=False) as handle:
                yield AtomicFile(handle, path.parent / name)
            # fsync covers the file's data whoever wrote it: this descriptor or a library
            # that opened ``AtomicFile.path`` by name.
            os.fsync(fd)
            if exclusive:
                # link(2) never replaces its target nor follows a symlink there
                os.link(name, path.name, src_dir_fd=folder, dst_dir_fd=folder)
                os.unlink(name, dir_fd=folder)
            else:
                os.replace(name, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=folder)
            raise
        finally:
            os.close(fd)
        if sync_folder:
            os.fsync(folder)  # the rename is durable only once the folder entry is on disk
    finally:
        os.close(folder)


@contextlib.contextmanager
def scratch_file(folder: Path, *, suffix: str = "") -> Iterator[Path]:
    """A new empty file ``.scratch.<random>.tmp<suffix>`` in ``folder`` (mode 0600 whatever
    the umask; ``O_EXCL | O_NOFOLLOW``, so never a planted file or symlink) for a library to
    write by name (reopening it keeps its mode); it is removed when the block ends, normally
    or by an exception. Hidden, so retention removes one a crash left behind in a data folder.
    The folder must exist. Raises ``OSError``."""
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
    try:
        name = f".scratch.{secrets.token_hex(6)}.tmp{suffix}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC
        fd = os.open(name, flags, PRIVATE_FILE, dir_fd=dir_fd)
        try:
            os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits off
        finally:
            os.close(fd)
        try:
            yield folder / name
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = PRIVATE_FILE,
    sync_folder: bool = True,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see ``atomic_writer``), as a
    file of ``mode`` (default 0600) whatever the umask; never follows a symlink at ``path``
    or at the temporary name. The folder must exist (``private_dir``). ``exclusive``: create
    ``path`` only if nothing is there, else ``FileExistsError``. Raises ``OSError``."""
    with atomic_writer(path, mode=mode, sync_folder=sync_folder, exclusive=exclusive) as tmp:
        tmp.file.write(data)


def read_nofollow(path: Path) -> bytes:
    """The bytes of the regular file ``path``; ``OSError`` (ELOOP) if ``path`` is a symlink,
    so a file planted as a link to somewhere else is never read as ours."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | _O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def private_dir(path: Path) -> Path:
    """Make sure folder ``path`` exists; every folder this creates (``path`` and missing
    parents) is 0700 whatever the umask. Existing folders are left as they are (the caller
    may warn with ``loose_bits``): tightening one that was configured, say ``/var/lib``, would
    break other software. Returns ``path``. Raises ``OSError``."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made meanwhile by another thread (two cameras' first snapshots)
        os.chmod(folder, PRIVATE_DIR)  # the umask may have taken bits off
    return path


def private_file(path: Path) -> None:
    """Make sure ``path`` exists as a file of mode 0600: create it empty, or take group and
    other bits off an existing one (a file written by an older version). For files a
    library (SQLite) then opens by name. Raises ``OSError``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, PRIVATE_FILE)
    try:
        if loose_bits(os.fstat(fd).st_mode):
            os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def loose_bits(st_mode: int) -> int:
    """The group and other permission bits of ``st_mode`` (0 for a private file or folder)."""
    return stat.S_IMODE(st_mode) & 0o077
