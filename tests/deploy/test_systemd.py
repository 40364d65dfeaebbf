"""``edge-app install --systemd`` and its unit: the plan ``--dry-run`` prints, a real install
into an OS image's root (``--root DIR`` with its own etc/passwd: the user is made there by
``useradd --prefix``), refusals before any step, and ``systemd-analyze verify`` and
``security`` on the unit as installed. This machine's /etc is never touched."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from edge_app.cli import main
from edge_app.install import DEFAULT_PREFIX, deploy_file, render_unit
from tests.deploy.conftest import Install

EXPOSURE_LIMIT = 2.0
"""``systemd-analyze security``: the unit's overall exposure (1.6 measured; 8.5 unhardened)."""


def unit_settings(text: str) -> dict[str, list[str]]:
    """The [Service] section of a unit: key -> every value it is given, in order."""
    section = ""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def staged(table: Path) -> dict[str, list[str]]:
    """name -> the fields of its line in a staged passwd or group file."""
    rows = (line.split(":") for line in table.read_text().splitlines())
    return {fields[0]: fields for fields in rows}


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """An OS image's root file system as far as useradd needs one: root and group video."""
    root = tmp_path / "image"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\nvideo:!::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o600)
    return root


def test_the_unit_is_notify_with_a_watchdog_and_hardened() -> None:
    template = deploy_file("edge-app.service").read_text()
    unit = unit_settings(template)
    expected = {
        "Type": ["notify"],
        "UMask": ["0077"],
        "User": ["edge-app"],
        "SupplementaryGroups": ["video"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ReadWritePaths": ["/var/lib/edge-app"],
        "PrivateTmp": ["yes"],
        "ProtectHome": ["yes"],
        "CapabilityBoundingSet": [""],
        "DevicePolicy": ["closed"],
        "DeviceAllow": ["char-video4linux rw"],
    }
    for key, values in expected.items():
        assert unit.get(key) == values, key
    assert int(unit["WatchdogSec"][0]) > 0
    assert "@system-service" in unit["SystemCallFilter"]
    assert set(unit["RestrictAddressFamilies"][0].split()) <= {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert unit["ExecStart"] == [
        f"{DEFAULT_PREFIX}/.venv/bin/edge-app run --config /etc/edge-app/config.yaml"
    ]
    assert "LoadCredential" not in unit  # until --at-rest-key enables it
    enabled = unit_settings(render_unit(template, PurePosixPath("/srv/ea"), at_rest_key=True))
    assert enabled["LoadCredential"] == ["at-rest:/etc/edge-app/at-rest.key"]
    assert enabled["ExecStart"][0].startswith("/srv/ea/.venv/bin/edge-app run ")
    assert enabled["Environment"][0] == "EDGE_APP_MODEL_DIR=/srv/ea/models"


def test_dry_run_prints_the_whole_plan_and_changes_nothing(
    image_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in (image_root / "etc").iterdir())
    argv = ["install", "--systemd", "--package", "edge-app[encryption]", "--dry-run"]
    assert main([*argv, "--root", str(image_root), "--at-rest-key"]) == 0
    out = capsys.readouterr().out
    steps = re.findall(r"^  \d+\. (.*)$", out, flags=re.MULTILINE)
    wanted = [
        "group edge-app, unless it exists: groupadd --system edge-app",
        "group video, unless it exists: groupadd --system video",
        "user edge-app, unless it exists: useradd --system --gid edge-app --groups video "
        "--home-dir /var/lib/edge-app --no-create-home --shell /usr/sbin/nologin edge-app",
        "venv /opt/edge-app/.venv with edge-app[encryption], the default model in "
        "/opt/edge-app/models (sha256 verified)",
        "folder /var/lib/edge-app (0700 edge-app:edge-app)",
        "folder /etc/edge-app (0750 root:edge-app)",
        "file /etc/edge-app/config.yaml (0640 root:edge-app) from the example",
        "key /etc/edge-app/at-rest.key (0600 root:root), unless it exists",
        "file /etc/systemd/system/edge-app.service (0644 root:root)",
        "systemctl daemon-reload",
    ]
    assert len(steps) == len(wanted)
    for step, start in zip(steps, wanted, strict=True):
        assert step.startswith(start), (step, start)
    assert "dry run: nothing is changed" in out
    assert "systemctl enable --now edge-app" in out
    assert sorted(p.name for p in (image_root / "etc").iterdir()) == before
    assert not (image_root / "opt").exists()


def test_install_into_an_image_root_makes_the_user_the_files_and_the_unit(
    image_install: Install, wheel: Path, image_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("useradd --prefix and chown need root")
    # the venv step on the fresh venv the image fixture made (tested there): a rerun of
    # install-venv.sh finds the package installed and the model verified
    prefix = image_root / "opt" / "edge-app"
    prefix.mkdir(parents=True)
    (prefix / ".venv").symlink_to(image_install.prefix / ".venv")
    shutil.copytree(image_install.prefix / "models", prefix / "models")
    argv = ["install", "--systemd", "--package", str(wheel), "--root", str(image_root)]
    assert main([*argv, "--at-rest-key"]) == 0
    out = capsys.readouterr().out
    assert "systemctl daemon-reload\n     skipped (--root" in out

    user = staged(image_root / "etc" / "passwd")["edge-app"]
    groups = staged(image_root / "etc" / "group")
    uid, gid = int(user[2]), int(groups["edge-app"][2])
    assert uid != 0
    assert user[3] == str(gid)
    assert user[5:] == ["/var/lib/edge-app", "/usr/sbin/nologin"]
    assert groups["video"][3].split(",") == ["edge-app"]

    def owned(path: str) -> tuple[int, int, str]:
        info = (image_root / path).stat()
        return info.st_uid, info.st_gid, oct(info.st_mode & 0o777)

    assert owned("var/lib/edge-app") == (uid, gid, "0o700")
    assert owned("etc/edge-app") == (0, gid, "0o750")
    assert owned("etc/edge-app/config.yaml") == (0, gid, "0o640")
    assert owned("etc/edge-app/at-rest.key") == (0, 0, "0o600")
    assert owned("etc/systemd/system/edge-app.service") == (0, 0, "0o644")
    config = image_root / "etc/edge-app/config.yaml"
    assert config.read_bytes() == deploy_file("edge-app.example.yaml").read_bytes()
    unit = (image_root / "etc/systemd/system/edge-app.service").read_text()
    assert unit == render_unit(deploy_file("edge-app.service").read_text(), DEFAULT_PREFIX, True)

    # idempotent: a second run keeps the user, the edited config and the key
    config.write_text(config.read_text().replace("warehouse-7", "warehouse-8"))
    key = (image_root / "etc/edge-app/at-rest.key").read_bytes()
    assert main([*argv, "--at-rest-key"]) == 0
    again = capsys.readouterr().out
    assert again.count("kept (exists") >= 4  # group, user, config, key
    assert "warehouse-8" in config.read_text()
    assert (image_root / "etc/edge-app/at-rest.key").read_bytes() == key
    assert staged(image_root / "etc" / "passwd")["edge-app"][2] == str(uid)
    names = [line.split(":")[0] for line in (image_root / "etc/passwd").read_text().splitlines()]
    assert names == ["root", "edge-app"]  # not added twice


def test_a_config_the_service_could_not_run_with_is_refused_before_any_step(
    image_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(deploy_file("edge-app.example.yaml").read_text())
    doc["device"]["data_dir"] = "/home/edge/state"  # ProtectSystem=strict: not writable
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump(doc))
    del doc["device"]["thing_name"]
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(yaml.safe_dump(doc))
    argv = ["install", "--systemd", "--package", "edge-app", "--root", str(image_root)]
    assert main([*argv, "--config", str(outside)]) == 2
    err = capsys.readouterr().err
    assert "device.data_dir is /home/edge/state" in err
    assert "may write only to /var/lib/edge-app" in err
    assert main([*argv, "--config", str(invalid)]) == 2
    err = capsys.readouterr().err
    assert "device.thing_name" in err
    assert "fix the configuration and run the install again" in err
    assert "Traceback" not in err
    assert not (image_root / "opt").exists()
    assert not (image_root / "var").exists()
    assert main([*argv, "--prefix", "opt/relative", "--dry-run"]) == 2
    assert "prefix must be an absolute path" in capsys.readouterr().err


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (apt-get install -y systemd)")
    return found


def test_systemd_analyze_verify_passes_on_the_unit_as_installed(
    image_install: Install, tmp_path: Path
) -> None:
    analyze = _systemd_analyze()
    # verify checks that ExecStart is executable: the prefix of a real install
    template = deploy_file("edge-app.service").read_text()
    unit = tmp_path / "edge-app.service"
    unit.write_text(render_unit(template, PurePosixPath(image_install.prefix), at_rest_key=True))

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
        )

    done = verify(unit)
    if "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    # verify warns on stderr (and still exits 0) for an unknown key or a bad value
    assert (done.returncode, done.stderr) == (0, "")
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    assert "strickt" in verify(broken).stderr  # the check above can fail

    security = subprocess.run(
        [analyze, "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for edge-app\.service: (\d+\.\d)", security.stdout)
    assert found, security.stdout[-2000:] + security.stderr
    assert float(found.group(1)) <= EXPOSURE_LIMIT
