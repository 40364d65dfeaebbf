"""The installer's steps: each says what it will do, and does it on a ``Target``.

A plan is a list of steps run in order; every step is idempotent, so running a plan again
after a failure picks up where it stopped. ``describe()`` is what ``--dry-run`` prints;
``apply()`` does the step and returns what happened (``done``, ``kept ...``, ``skipped ...``).

A ``Target`` is the root folder the paths of a plan live under: ``/`` for a real install, or
a staging folder (``--root DIR``), such as the root file system of an OS image. Under a staging
folder, users and groups are made in its own ``etc/passwd`` and ``etc/group`` (``useradd
--prefix DIR``) and files are given to its uids, when it has those files; without them, those
steps are skipped and say so. ``systemctl`` runs only on a real install.
"""

from __future__ import annotations

__all__ = [
    "Directory",
    "EnsureGroup",
    "EnsureUser",
    "File",
    "KeyFile",
    "Owner",
    "Step",
    "Systemctl",
    "Target",
    "Venv",
]

import grp
import os
import pwd
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from edge_app.atrest import generate_key_file
from edge_app.errors import EncryptionError, InstallError
from edge_app.files import write_atomic

_STAGED = "skipped (--root: this machine is not changed)"
_NO_ACCOUNTS = "skipped (--root DIR has no etc/passwd to add it to)"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a plan is applied: ``root`` is ``/`` for this machine, else a staging folder."""

    root: Path

    @property
    def system(self) -> bool:
        """True when the plan changes this machine itself (users, ownership, systemd)."""
        return self.root == Path("/")

    @property
    def accounts(self) -> bool:
        """True when users and groups can be made: this machine, or a staging folder that
        has its own ``etc/passwd`` (an OS image's root file system)."""
        return self.system or (self.root / "etc" / "passwd").is_file()

    def path(self, path: PurePosixPath) -> Path:
        """``path`` (absolute, as on the installed machine) under ``root``."""
        return self.root / path.relative_to("/")

    def prefix_args(self) -> list[str]:
        """``--prefix DIR`` for groupadd/useradd/usermod under a staging folder."""
        return [] if self.system else ["--prefix", str(self.root)]

    def gid(self, name: str) -> int | None:
        """The id of group ``name`` on the target, or None if it has no such group."""
        if self.system:
            try:
                return grp.getgrnam(name).gr_gid
            except KeyError:
                return None
        return _staged_id(self.root / "etc" / "group", name)

    def uid(self, name: str) -> int | None:
        """The id of user ``name`` on the target, or None if it has no such user."""
        if self.system:
            try:
                return pwd.getpwnam(name).pw_uid
            except KeyError:
                return None
        return _staged_id(self.root / "etc" / "passwd", name)


def _staged_id(table: Path, name: str) -> int | None:
    """The id (third field) of ``name`` in a passwd or group file; None if absent."""
    try:
        lines = table.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InstallError(f"cannot read {table}: {exc.strerror}") from exc
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


@dataclass(frozen=True, slots=True)
class Owner:
    """The user and group a file or folder belongs to once installed."""

    user: str
    group: str

    def __str__(self) -> str:
        return f"{self.user}:{self.group}"

    def apply(self, path: Path, target: Target) -> str:
        """chown ``path`` to the target's ids; a note why not when it has no such accounts
        (a staging folder without ``etc/passwd``)."""
        uid, gid = target.uid(self.user), target.gid(self.group)
        if uid is None or gid is None:
            if target.system:
                raise InstallError(f"cannot give {path} to {self}: no such user or group")
            return f" (owner {self} not set: {target.root} has no such user or group)"
        try:
            os.chown(path, uid, gid)
        except OSError as exc:
            raise InstallError(f"cannot give {path} to {self}: {exc.strerror}") from exc
        return ""


class Step(Protocol):
    """One change of an install."""

    def describe(self) -> str:
        """What the step does, as ``--dry-run`` prints it."""

    def apply(self, target: Target) -> str:
        """Do it on ``target``; what happened. Raises ``InstallError``."""


def _run(argv: list[str], what: str, *, capture: bool = True) -> None:
    """Run ``argv``; ``InstallError`` naming ``what``, the command and its output tail."""
    try:
        done = subprocess.run(argv, capture_output=capture, text=True, check=False)
    except OSError as exc:
        raise InstallError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])
        said = f": {tail}" if tail else " (its output is above)"
        raise InstallError(
            f"{what}: `{shlex.join(argv)}` exited with {done.returncode}{said}; fix that and "
            "run the install again (the steps done so far are kept)"
        )


@dataclass(frozen=True, slots=True)
class EnsureGroup:
    """A system group, created unless it exists."""

    name: str

    def describe(self) -> str:
        return f"group {self.name}, unless it exists: groupadd --system {self.name}"

    def apply(self, target: Target) -> str:
        if not target.accounts:
            return _NO_ACCOUNTS
        if target.gid(self.name) is not None:
            return "kept (exists)"
        _run(["groupadd", *target.prefix_args(), "--system", self.name], f"group {self.name}")
        return "done"


@dataclass(frozen=True, slots=True)
class EnsureUser:
    """A system user without a login shell or home of its own, in ``group`` and ``groups``;
    an existing user is only added to ``groups``."""

    name: str
    group: str
    groups: tuple[str, ...]
    home: PurePosixPath

    def _useradd(self, prefix: list[str]) -> list[str]:
        return [
            "useradd",
            *prefix,
            "--system",
            "--gid",
            self.group,
            "--groups",
            ",".join(self.groups),
            "--home-dir",
            str(self.home),
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            self.name,
        ]

    def describe(self) -> str:
        return f"user {self.name}, unless it exists: {shlex.join(self._useradd([]))}"

    def apply(self, target: Target) -> str:
        if not target.accounts:
            return _NO_ACCOUNTS
        prefix = target.prefix_args()
        if target.uid(self.name) is not None:
            groups = ",".join(self.groups)
            _run(["usermod", *prefix, "--append", "--groups", groups, self.name], self.name)
            return f"kept (exists; in {', '.join(self.groups)})"
        _run(self._useradd(prefix), f"user {self.name}")
        return "done"


@dataclass(frozen=True, slots=True)
class Venv:
    """``install-venv.sh``: the venv at ``prefix/.venv`` with ``package``, and the default
    model pulled into ``prefix/models`` and verified. Runs under a staging folder too (its
    venv then names the staging path: venvs cannot be moved)."""

    script: Path
    prefix: PurePosixPath
    package: str

    def describe(self) -> str:
        argv = ["sh", str(self.script), str(self.prefix), self.package]
        return (
            f"venv {self.prefix}/.venv with {self.package}, the default model in "
            f"{self.prefix}/models (sha256 verified): {shlex.join(argv)}"
        )

    def apply(self, target: Target) -> str:
        argv = ["sh", str(self.script), str(target.path(self.prefix)), self.package]
        _run(argv, f"venv {self.prefix}", capture=False)  # pip's and the pull's own output
        return "done"


@dataclass(frozen=True, slots=True)
class Directory:
    """A folder with ``mode`` and ``owner`` (parents created as needed, 0755)."""

    path: PurePosixPath
    mode: int
    owner: Owner

    def describe(self) -> str:
        return f"folder {self.path} ({self.mode:04o} {self.owner})"

    def apply(self, target: Target) -> str:
        path = target.path(self.path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, self.mode)  # also an existing folder: these modes are the contract
        except OSError as exc:
            raise InstallError(f"folder {self.path}: {exc.strerror}") from exc
        return "done" + self.owner.apply(path, target)


@dataclass(frozen=True, slots=True)
class File:
    """A file with ``data``, written atomically; an existing one is replaced only when
    ``replace`` (files the installer owns, such as the unit), else kept as it is."""

    path: PurePosixPath
    data: bytes
    mode: int
    owner: Owner
    source: str
    replace: bool

    def describe(self) -> str:
        keep = "" if self.replace else "; an existing one is kept"
        return f"file {self.path} ({self.mode:04o} {self.owner}) from {self.source}{keep}"

    def apply(self, target: Target) -> str:
        path = target.path(self.path)
        if path.exists() and not self.replace:
            return "kept (exists; edit it in place)"
        try:
            if path.is_file() and path.read_bytes() == self.data:
                os.chmod(path, self.mode)
                return "kept (unchanged)" + self.owner.apply(path, target)
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)  # under --root DIR
            write_atomic(path, self.data, mode=self.mode)
        except OSError as exc:
            raise InstallError(f"file {self.path}: {exc.strerror}") from exc
        return "done" + self.owner.apply(path, target)


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A new key for encryption at rest (``edge-app keys generate``: 0600, never
    overwrites); an existing key is kept."""

    path: PurePosixPath
    owner: Owner

    def describe(self) -> str:
        return f"key {self.path} (0600 {self.owner}), unless it exists: edge-app keys generate"

    def apply(self, target: Target) -> str:
        path = target.path(self.path)
        if path.exists():
            return "kept (exists)"
        try:
            kid = generate_key_file(path)
        except EncryptionError as exc:
            raise InstallError(f"key {self.path}: {exc}") from exc
        return f"done (key id {kid}; keep a copy somewhere safe)" + self.owner.apply(path, target)


@dataclass(frozen=True, slots=True)
class Systemctl:
    """``systemctl ARGS`` on a real install."""

    args: tuple[str, ...]

    def describe(self) -> str:
        return shlex.join(["systemctl", *self.args])

    def apply(self, target: Target) -> str:
        if not target.system:
            return _STAGED
        _run(["systemctl", *self.args], "systemctl")
        return "done"
