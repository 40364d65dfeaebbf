"""Installing edge-app as a system service (``edge-app install --systemd``).

``steps`` holds the idempotent steps a plan is made of and the ``Target`` they apply to
(``/``, or a staging folder with ``--root``); ``systemd`` builds the plan for a systemd
install; ``assets`` finds the deploy files (unit, example config, venv script) in the wheel or
a checkout. Nothing here is used by the daemon (an import-linter contract says so).
"""

from edge_app.install.assets import deploy_file
from edge_app.install.steps import Step, Target
from edge_app.install.systemd import (
    CONFIG_FILE,
    DEFAULT_PREFIX,
    KEY_FILE,
    STATE_DIR,
    UNIT_FILE,
    SystemdInstall,
    next_steps,
    plan,
    render_unit,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_PREFIX",
    "KEY_FILE",
    "STATE_DIR",
    "UNIT_FILE",
    "Step",
    "SystemdInstall",
    "Target",
    "deploy_file",
    "next_steps",
    "plan",
    "render_unit",
]
