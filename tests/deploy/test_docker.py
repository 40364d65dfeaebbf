"""The Docker image, as far as this machine allows without a Docker engine: the Dockerfile's
structure, its build step (``deploy/install-venv.sh``) run for real in a fresh venv, and its
ENTRYPOINT, CMD and HEALTHCHECK run against a real daemon from that venv."""

from __future__ import annotations

import fnmatch
import json
import shlex
import signal
import subprocess
from pathlib import Path

import yaml

from edge_app.models import ModelSpec, sha256_file
from simulator.broker import free_port
from tests.deploy.conftest import DEPLOY, REPO_ROOT, Install, run_venv_script
from tests.factories import wait_until

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
CONFIG_IN_IMAGE = "/etc/edge-app/config.yaml"
STATE_IN_IMAGE = "/var/lib/edge-app"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cc ", "clang", "apt-get install")


def instructions(text: str) -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The build stages: each list starts with its FROM."""
    found: list[list[tuple[str, str]]] = []
    for instr in instructions(DOCKERFILE.read_text()):
        if instr[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instr)
    return found


def final(keyword: str) -> list[str]:
    return [args for kw, args in stages()[-1] if kw == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (HEALTHCHECK's options stripped)."""
    value = json.loads(args[args.index("[") :])
    assert isinstance(value, list)
    assert all(isinstance(part, str) for part in value)
    return value


def in_image(argv: list[str], config: Path) -> list[str]:
    """``argv`` of the image run here: the config mounted at /etc/edge-app is ``config``."""
    return [str(config) if part == CONFIG_IN_IMAGE else part for part in argv]


def test_the_image_is_built_in_two_stages_from_one_base() -> None:
    build, last = stages()
    assert len(stages()) == 2
    assert build[0][1].endswith("AS build")
    # the venv's scripts name the interpreter's path: both stages need the same base
    assert build[0][1].split()[0] == last[0][1] == "${PYTHON_IMAGE}"
    copies = [args for kw, args in last if kw == "COPY"]
    assert copies == ["--from=build /opt/edge-app /opt/edge-app"]


def test_the_final_stage_runs_as_a_non_root_user_with_no_build_tools() -> None:
    (user,) = final("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()  # numeric: a runtime's runAsNonRoot can check it
    assert int(uid) != 0
    assert gid == uid
    assert final("ARG") == [f"UID={uid}"]  # the user the RUN below creates
    runs = " ".join(final("RUN"))
    assert '--uid "${UID}"' in runs
    assert "--groups video" in runs  # cameras (with --group-add of the host's gid)
    for tool in BUILD_TOOLS:
        assert tool not in runs, tool
    assert "pip" not in runs  # installed in the build stage, copied whole


def test_state_is_a_volume_and_config_and_certificates_are_not_in_the_image() -> None:
    assert final("VOLUME") == [json.dumps([STATE_IN_IMAGE])]
    env = " ".join(final("ENV"))
    assert "EDGE_APP_MODEL_DIR=/opt/edge-app/models" in env
    text = DOCKERFILE.read_text()
    assert "read-only" in text  # the mount points are documented for the user
    # nothing of /etc/edge-app (config, keys, certificates) is copied in
    for kind in ("COPY", "ADD"):
        for stage in stages():
            assert not any("/etc/edge-app" in args for kw, args in stage if kw == kind)


def test_the_build_copies_only_files_the_context_has_and_dockerignore_keeps() -> None:
    build = stages()[0]
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kw, args in build:
        if kw != "COPY":
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source.rstrip("/"), pat) for pat in ignored), source
    for secret_or_bulk in (".git", ".venv", "tests", "*.tflite"):
        assert secret_or_bulk in ignored
    (run,) = [args for kw, args in build if kw == "RUN"]
    assert "sh deploy/install-venv.sh /opt/edge-app" in run


def test_the_build_script_makes_a_fresh_venv_with_the_verified_model(
    image_install: Install, model_spec: ModelSpec
) -> None:
    model = image_install.prefix / "models" / model_spec.file
    assert model.stat().st_size == model_spec.bytes
    assert sha256_file(model) == model_spec.sha256
    assert oct(model.stat().st_mode & 0o777) == "0o644"  # public weights, root's in the image
    assert (image_install.bin / "edge-app").is_file()
    pip = [str(image_install.bin / "python"), "-m", "pip"]
    listed = subprocess.run([*pip, "list", "--format=json"], capture_output=True, text=True)
    names = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert {"edge-app", "ai-edge-litert", "cryptography"} <= names  # the wheel and its extra
    assert not names & {"pytest", "ruff", "mypy", "moto", "hypothesis"}  # no dev tools
    check = subprocess.run([*pip, "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_the_build_script_replaces_a_model_whose_sha256_is_wrong(
    image_install: Install, model_spec: ModelSpec, wheel: Path, tmp_path: Path
) -> None:
    prefix = tmp_path / "edge-app"
    (prefix / "models").mkdir(parents=True)
    (prefix / ".venv").symlink_to(image_install.prefix / ".venv")  # reuse the fresh venv
    planted = prefix / "models" / model_spec.file
    planted.write_bytes(b"\0" * model_spec.bytes)  # the right size, the wrong bytes
    done = run_venv_script(prefix, str(wheel))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrong sha256; fetching it again" in done.stderr
    assert sha256_file(planted) == model_spec.sha256


def test_the_build_script_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    usage = subprocess.run(
        ["sh", str(DEPLOY / "install-venv.sh"), str(tmp_path)], text=True, capture_output=True
    )
    assert usage.returncode == 2
    assert "usage: install-venv.sh PREFIX PACKAGE" in usage.stderr
    old = subprocess.run(
        ["sh", str(DEPLOY / "install-venv.sh"), str(tmp_path / "p"), "edge-app"],
        env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/false"},
        capture_output=True,
        text=True,
    )
    assert old.returncode == 2
    assert "needs Python 3.11 or newer" in old.stderr
    assert not (tmp_path / "p").exists()


def test_entrypoint_cmd_and_healthcheck_are_commands_of_the_installed_venv(
    image_install: Install,
) -> None:
    (entrypoint,) = final("ENTRYPOINT")
    (cmd,) = final("CMD")
    (healthcheck,) = final("HEALTHCHECK")
    assert "--interval=" in healthcheck
    assert "--start-period=" in healthcheck
    for argv in (exec_form(entrypoint) + exec_form(cmd), exec_form(healthcheck)):
        assert (image_install.bin / argv[0]).is_file(), argv[0]  # on the image's PATH
        command, *options = argv[1:]
        shown = subprocess.run(
            [argv[0], command, "--help"],
            env=image_install.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        for option in options:
            if option.startswith("--"):
                assert option in shown.stdout, (argv, option)
    assert CONFIG_IN_IMAGE in exec_form(cmd)
    assert CONFIG_IN_IMAGE in exec_form(healthcheck)  # the probe reads the daemon's config


def test_the_image_command_runs_the_daemon_and_its_healthcheck_follows_it(
    image_install: Install, clip: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"thing_name": "docker-cam", "data_dir": str(tmp_path / "state")},
                "cameras": [
                    {
                        "name": "replay",
                        "source": {
                            "type": "file",
                            "path": str(clip),
                            "realtime": True,
                            "loop": True,
                        },
                    }
                ],
                # by name: found in the image's model dir ($EDGE_APP_MODEL_DIR)
                "detector": {"model": "ssd_mobilenet_v2_coco"},
                "uplink": {"enabled": False},
                "health": {"host": "127.0.0.1", "port": free_port()},
            }
        )
    )
    entry = exec_form(final("ENTRYPOINT")[0]) + exec_form(final("CMD")[0])
    probe = in_image(exec_form(final("HEALTHCHECK")[0]), config)
    env = image_install.env()

    def healthy() -> bool:
        return subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode == 0

    assert not healthy()  # nothing runs yet: unhealthy
    daemon = subprocess.Popen(
        in_image(entry, config),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(healthy, timeout=120), shlex.join(probe)
        answer = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
        assert answer.stdout.strip() == "ok"
        daemon.send_signal(signal.SIGTERM)  # docker stop
        _, stderr = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, stderr[-2000:]
    assert not healthy()
    assert (tmp_path / "state" / "outbox.db").is_file()
