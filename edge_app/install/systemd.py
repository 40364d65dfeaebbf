"""``edge-app install --systemd``: the plan that installs the daemon as a systemd service.

What it installs (the modes are part of the contract; docs/deploy.md):

- user and group ``edge-app`` (``useradd --system``), also in group ``video`` (cameras);
- ``PREFIX/.venv`` with the package and ``PREFIX/models`` with the default model, sha256
  verified (``deploy/install-venv.sh``): root's, 0755/0644 (code and public weights);
- ``/etc/edge-app`` 0750 root:edge-app, and in it ``config.yaml`` 0640 root:edge-app (the
  user's file, validated, or the example), never overwritten;
- ``/var/lib/edge-app`` 0700 edge-app:edge-app: the state (outbox, snapshots, clips,
  last-good config), the one folder the unit lets the daemon write;
- with ``--at-rest-key``: ``/etc/edge-app/at-rest.key`` 0600 root:root, handed to the service
  as the systemd credential ``at-rest``;
- ``/etc/systemd/system/edge-app.service`` 0644 (``deploy/edge-app.service``, PREFIX filled in).

The service is not started: the configuration needs the user's camera, endpoint and
certificates first (the plan's next steps say so).
"""

from __future__ import annotations

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_PREFIX",
    "KEY_FILE",
    "STATE_DIR",
    "UNIT_FILE",
    "SystemdInstall",
    "next_steps",
    "plan",
    "render_unit",
]

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edge_app.config import AppConfig, parse_config
from edge_app.config.loader import read_yaml
from edge_app.errors import InstallError
from edge_app.install.assets import EXAMPLE_CONFIG, UNIT, VENV_SCRIPT, deploy_file
from edge_app.install.steps import (
    Directory,
    EnsureGroup,
    EnsureUser,
    File,
    KeyFile,
    Owner,
    Step,
    Systemctl,
    Target,
    Venv,
)

DEFAULT_PREFIX = PurePosixPath("/opt/edge-app")
"""Where the venv and the models go; the unit's ExecStart names it."""
CONFIG_DIR = PurePosixPath("/etc/edge-app")
CONFIG_FILE = CONFIG_DIR / "config.yaml"
"""The unit's ``--config``; systemd's ``ConfigurationDirectory=edge-app``."""
STATE_DIR = PurePosixPath("/var/lib/edge-app")
"""``device.data_dir``; systemd's ``StateDirectory=edge-app``, the one writable path."""
KEY_FILE = CONFIG_DIR / "at-rest.key"
"""The at-rest key the unit's ``LoadCredential=at-rest:`` line hands the service."""
UNIT_FILE = PurePosixPath("/etc/systemd/system/edge-app.service")
USER = "edge-app"
GROUPS = ("video",)
"""Supplementary groups of the service user: ``video`` opens /dev/video* (USB cameras)."""
CREDENTIAL_LINE = "LoadCredential=at-rest:"

_ROOT = Owner("root", "root")
_CONFIG_OWNER = Owner("root", USER)  # the daemon reads its config; only root changes it
_SERVICE = Owner(USER, USER)


@dataclass(frozen=True, slots=True)
class SystemdInstall:
    """What to install. ``package``: a wheel file (with extras, ``...whl[encryption]``) or a
    pip requirement; ``config``: the user's configuration file, else the example;
    ``at_rest_key``: make the key of encryption at rest and hand it to the service as a
    systemd credential."""

    package: str
    prefix: PurePosixPath = DEFAULT_PREFIX
    config: Path | None = None
    at_rest_key: bool = False

    def __post_init__(self) -> None:
        if not self.prefix.is_absolute() or ".." in self.prefix.parts:
            raise ValueError(f"prefix must be an absolute path without '..', got {self.prefix}")
        if not self.package.strip():
            raise ValueError("package must name a wheel file or a requirement")


def render_unit(template: str, prefix: PurePosixPath, at_rest_key: bool) -> str:
    """The unit file for ``prefix``: ``deploy/edge-app.service`` names ``/opt/edge-app``
    (ExecStart, the model dir); with ``at_rest_key`` its ``LoadCredential=at-rest:`` line is
    enabled. The default prefix without the key gives the template back unchanged."""
    if f"#{CREDENTIAL_LINE}" not in template or f"{DEFAULT_PREFIX}/" not in template:
        raise InstallError(
            f"{UNIT} is not the unit this installer knows (no {DEFAULT_PREFIX}/ or no "
            f"#{CREDENTIAL_LINE} line): reinstall edge-app from its wheel"
        )
    text = template.replace(f"{DEFAULT_PREFIX}/", f"{prefix}/")
    if at_rest_key:
        text = text.replace(f"#{CREDENTIAL_LINE}", CREDENTIAL_LINE)
    return text


def _checked_config(data: bytes, source: str) -> AppConfig:
    """``data`` validated as it will be read once installed (relative paths against
    /etc/edge-app), and writing only where the unit lets the daemon write."""
    config = parse_config(read_yaml(data, source), source, Path(CONFIG_DIR))
    state = Path(STATE_DIR)
    for field, path in (
        ("device.data_dir", config.device.data_dir),
        ("outbox.path", config.outbox_path.parent),
    ):
        if path != state and state not in path.parents:
            raise InstallError(
                f"{source}: {field} is {path}, but the service may write only to {state} "
                f"(ProtectSystem=strict, ReadWritePaths={state}): set device.data_dir: {state}"
            )
    return config


def plan(spec: SystemdInstall, target: Target) -> tuple[list[Step], AppConfig]:
    """The steps of the install, and the configuration it installs (for ``next_steps``).

    Raises ``ConfigError`` for an invalid ``spec.config``, ``InstallError`` when it writes
    outside the state dir or differs from a configuration already installed (which is
    never overwritten), before any step is run."""
    if spec.config is not None:
        try:
            data = spec.config.read_bytes()
        except OSError as exc:
            raise InstallError(f"cannot read {spec.config}: {exc.strerror}") from exc
        source = str(spec.config)
    else:
        example = deploy_file(EXAMPLE_CONFIG)
        data, source = example.read_bytes(), f"the example ({example.name})"
    installed = target.path(CONFIG_FILE)
    if installed.is_file():
        if spec.config is not None and installed.read_bytes() != data:
            raise InstallError(
                f"{CONFIG_FILE} exists and differs from {spec.config}: it is never "
                "overwritten; edit it in place, or remove it and install again"
            )
        # the configuration in force is the installed one
        data, source = installed.read_bytes(), str(CONFIG_FILE)
    config = _checked_config(data, source)
    unit = render_unit(deploy_file(UNIT).read_text(), spec.prefix, spec.at_rest_key)
    steps: list[Step] = [
        EnsureGroup(USER),
        *(EnsureGroup(group) for group in GROUPS),
        EnsureUser(USER, USER, GROUPS, STATE_DIR),
        Venv(deploy_file(VENV_SCRIPT), spec.prefix, spec.package),
        Directory(STATE_DIR, 0o700, _SERVICE),
        Directory(CONFIG_DIR, 0o750, _CONFIG_OWNER),
        File(CONFIG_FILE, data, 0o640, _CONFIG_OWNER, source, replace=False),
    ]
    if spec.at_rest_key:
        steps.append(KeyFile(KEY_FILE, _ROOT))
    steps += [
        File(UNIT_FILE, unit.encode(), 0o644, _ROOT, f"{UNIT} (prefix {spec.prefix})", True),
        Systemctl(("daemon-reload",)),
    ]
    return steps, config


def next_steps(spec: SystemdInstall, config: AppConfig) -> list[str]:
    """What the user does after the install: the service is installed, not started."""
    steps = [
        f"edit {CONFIG_FILE} (cameras, uplink.host, uplink.tls), then check it: "
        f"{spec.prefix}/.venv/bin/edge-app config validate {CONFIG_FILE}",
        f"files the daemon reads that only it may read (device key, health token) must be "
        f"owned by {USER}: chown {USER}: FILE && chmod 600 FILE",
        "start it: systemctl enable --now edge-app; follow it: journalctl -u edge-app -f",
    ]
    if spec.at_rest_key and config.encryption.credential != "at-rest":
        steps.insert(
            1,
            "to use the key: set encryption: {enabled: true, credential: at-rest} in "
            f"{CONFIG_FILE}",
        )
    return steps
