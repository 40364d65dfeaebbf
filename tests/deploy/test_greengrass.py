"""The Greengrass v2 component (deploy/greengrass): the recipe's structure, its default
configuration read as the daemon reads it, gdk-config.json, and the lifecycle run for real
without a nucleus: build.sh lays out the artifacts, the recipe's variables are interpolated as
Greengrass does (``{artifacts:path}``, ``{work:path}``, ``{configuration:/config}`` as JSON),
and the Install and Run scripts run with ``sh -c`` in the work folder, in a fresh venv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.config import load_config_env
from simulator.broker import free_port
from tests.deploy.conftest import DEPLOY, REPO_ROOT, skip_unless_pulled

GREENGRASS = DEPLOY / "greengrass"
RECIPE = GREENGRASS / "recipe.yaml"
ARTIFACT_URI = re.compile(r"^s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/([^/]+)$")
ARTIFACT_REF = re.compile(r"\{artifacts:path\}/([^\"\[\s]+)")
CORE = "gg-core-7"


def recipe() -> dict[str, Any]:
    doc = yaml.safe_load(RECIPE.read_text())
    assert isinstance(doc, dict)
    return doc


def lifecycle() -> dict[str, Any]:
    (manifest,) = recipe()["Manifests"]
    value = manifest["Lifecycle"]
    assert isinstance(value, dict)
    return value


def artifact_names() -> set[str]:
    """The file names of the manifest's artifacts (their URIs hold gdk's placeholders)."""
    (manifest,) = recipe()["Manifests"]
    names = set()
    for artifact in manifest["Artifacts"]:
        found = ARTIFACT_URI.match(artifact["URI"])
        assert found, artifact["URI"]  # placeholders `gdk component publish` fills in
        names.add(found.group(1))
    return names


def interpolate(text: str, variables: dict[str, str]) -> str:
    """``text`` with Greengrass's recipe variables replaced; any left over fails the test."""
    for name, value in variables.items():
        text = text.replace("{" + name + "}", value)
    assert not re.search(r"\{(artifacts|work|configuration|iot|kernel):", text), text
    return text


def package_version() -> str:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def test_the_recipe_has_what_greengrass_requires_and_no_access_it_does_not_need() -> None:
    doc = recipe()
    assert doc["RecipeFormatVersion"] == "2020-01-25"
    assert re.fullmatch(r"[A-Za-z0-9.]+", doc["ComponentName"])
    assert doc["ComponentVersion"] == package_version()  # the wheel's name carries it
    assert doc["ComponentDescription"]
    assert doc["ComponentPublisher"]
    # the daemon reaches IoT Core with its own certificate: no IPC, MQTT proxy, token exchange
    assert set(doc["ComponentConfiguration"]) == {"DefaultConfiguration"}
    assert "ComponentDependencies" not in doc
    (manifest,) = doc["Manifests"]
    assert manifest["Platform"] == {"os": "linux"}
    steps = manifest["Lifecycle"]
    assert set(steps) == {"Setenv", "Install", "Run"}
    assert steps["Setenv"]["EDGE_APP_CONFIG"] == "{configuration:/config}"
    assert isinstance(steps["Install"]["Timeout"], int)
    assert "run --config-env EDGE_APP_CONFIG" in steps["Run"]["Script"]
    assert steps["Run"]["Script"].startswith("exec ")  # Greengrass's SIGTERM reaches the daemon
    assert "config validate --config-env EDGE_APP_CONFIG" in steps["Install"]["Script"]


def test_every_artifact_the_lifecycle_names_is_listed_and_build_sh_makes_it() -> None:
    listed = artifact_names()
    scripts = " ".join(str(step.get("Script", "")) for step in lifecycle().values())
    assert set(ARTIFACT_REF.findall(scripts)) == listed
    assert listed == {f"edge_app-{package_version()}-py3-none-any.whl", "install-venv.sh"}


def test_gdk_config_builds_and_publishes_this_component() -> None:
    gdk = json.loads((GREENGRASS / "gdk-config.json").read_text())
    doc = recipe()
    (name,) = gdk["component"]
    assert name == doc["ComponentName"]
    component = gdk["component"][name]
    assert component["version"] == doc["ComponentVersion"]
    assert component["build"] == {
        "build_system": "custom",
        "custom_build_command": ["sh", "build.sh"],
    }
    assert (GREENGRASS / "build.sh").is_file()
    assert {"bucket", "region"} <= set(component["publish"])


def test_the_default_configuration_is_a_valid_daemon_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the component's work folder
    default = recipe()["ComponentConfiguration"]["DefaultConfiguration"]["config"]
    text = json.dumps(default).replace("{iot:thingName}", CORE)  # the nucleus interpolates it
    config = load_config_env("EDGE_APP_CONFIG", {"EDGE_APP_CONFIG": text})
    assert config.device.thing_name == f"{CORE}-cam"
    assert config.device.data_dir == tmp_path / "state"
    assert config.uplink.enabled
    assert config.uplink.host.endswith(".invalid")  # a placeholder that never resolves
    assert config.uplink.tls is not None  # TLS by default, as on every install
    assert config.health.host == "127.0.0.1"


@pytest.mark.slow  # a fresh venv and a replay: about a minute
def test_build_then_install_and_run_lifecycle_against_a_local_install(
    tmp_path: Path, clip: Path
) -> None:
    out = tmp_path / "greengrass-build"
    built = subprocess.run(
        ["sh", str(GREENGRASS / "build.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    doc = recipe()
    assert (out / "recipes" / "recipe.yaml").read_text() == RECIPE.read_text()
    artifacts = out / "artifacts" / doc["ComponentName"] / doc["ComponentVersion"]
    assert {p.name for p in artifacts.iterdir()} == artifact_names()

    # a deployment's configuration: the default with a short clip, no uplink, a free port
    config = json.loads(json.dumps(doc["ComponentConfiguration"]["DefaultConfiguration"]["config"]))
    config["cameras"] = [
        {"name": "cam0", "source": {"type": "file", "path": str(clip), "realtime": False}}
    ]
    config["uplink"] = {"enabled": False}
    config["health"]["port"] = free_port()
    work = tmp_path / "work" / doc["ComponentName"]
    work.mkdir(parents=True)
    variables = {
        "artifacts:path": str(artifacts),
        "work:path": str(work),
        "configuration:/config": json.dumps(config),
        "iot:thingName": CORE,
    }
    steps = lifecycle()
    env = {
        **os.environ,
        "PYTHON": sys.executable,  # python3 of the core device
        **{k: interpolate(v, variables) for k, v in steps["Setenv"].items()},
    }

    def lifecycle_step(name: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
        script = interpolate(steps[name]["Script"], variables)
        return subprocess.run(
            ["sh", "-c", script],
            cwd=work,
            env=environ,
            capture_output=True,
            text=True,
            timeout=900,
        )

    installed = lifecycle_step("Install", env)
    skip_unless_pulled(installed)
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert f"$EDGE_APP_CONFIG: ok (device {CORE}-cam" in installed.stdout
    assert (work / ".venv" / "bin" / "edge-app").is_file()
    assert (work / "models").is_dir()

    ran = lifecycle_step("Run", env)
    assert ran.returncode == 0, ran.stderr[-3000:]  # the clip ended: a clean stop
    assert (work / "state" / "outbox.db").is_file()  # data_dir relative: the work folder

    # a deployment whose configuration is invalid fails at Install (Greengrass rolls it back)
    config["device"] = {}
    bad = {**env, "EDGE_APP_CONFIG": json.dumps(config)}
    refused = lifecycle_step("Install", bad)
    assert refused.returncode != 0
    assert "device.thing_name" in refused.stdout + refused.stderr
