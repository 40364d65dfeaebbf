"""The deploy files the installer installs, found in the wheel or in a checkout.

An installed wheel carries them as ``edge_app/_deploy/`` (``pyproject.toml``,
``force-include``); a checkout has them in ``<repo>/deploy/``. Either way they are the same
files a user installing by hand copies: one source for both.
"""

from __future__ import annotations

__all__ = ["EXAMPLE_CONFIG", "UNIT", "VENV_SCRIPT", "deploy_file"]

from pathlib import Path

from edge_app.errors import InstallError

UNIT = "edge-app.service"
"""The systemd unit (``deploy/edge-app.service``)."""
EXAMPLE_CONFIG = "edge-app.example.yaml"
"""The starting configuration installed when the user gives none."""
VENV_SCRIPT = "install-venv.sh"
"""Makes the venv, installs the package, pulls and verifies the default model."""

_PACKAGED = Path(__file__).resolve().parents[1] / "_deploy"
_REPO = Path(__file__).resolve().parents[2] / "deploy"


def deploy_file(name: str) -> Path:
    """Path of the deploy file ``name``; ``InstallError`` if this installation lacks it."""
    for folder in (_PACKAGED, _REPO):
        if (folder / name).is_file():
            return folder / name
    raise InstallError(
        f"{name} is missing from this installation (looked in {_PACKAGED} and {_REPO}): "
        "reinstall edge-app from its wheel"
    )
