"""``edge-app aws provision|check|policy`` as a user runs them: output, exit codes, and clear
errors (no traceback) for missing credentials, region, packages and refused certificates."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.aws import device_policy
from edge_app.cli import Registrar, main
from edge_app.cli import aws as aws_cmd
from simulator.broker import Mosquitto
from simulator.certs import Pki
from simulator.shadow import ShadowService
from tests.aws.signing import CsrSigningClient
from tests.telemetry.aws import moto_client


def commands(factory: Any) -> tuple[Registrar, ...]:
    return (functools.partial(aws_cmd.register, iot_factory=factory),)


@pytest.fixture
def signing_factory(moto_endpoint: str, pki: Pki) -> Any:
    """What the CLI builds its IoT client with: moto, with AWS IoT's CSR signing."""

    def make(region: str | None, profile: str | None, url: str | None) -> Any:
        assert (profile, url) == (None, None)
        assert region in (None, "us-east-1")  # teardown passes the recorded region
        return CsrSigningClient(moto_client("iot", moto_endpoint), pki.ca, pki.ca.parent / "ca.key")

    return make


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], factory: Any = None
) -> tuple[int, str, str]:
    code = main(argv, commands(factory)) if factory else main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def edge_app(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``edge-app`` in a fresh interpreter (nothing of this process's imports or config)."""
    return subprocess.run(
        [sys.executable, "-m", "edge_app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_provision_then_again_then_teardown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signing_factory: Any, thing_name: str
) -> None:
    out = tmp_path / "dev"
    argv = ["aws", "provision", "--thing", thing_name, "--out", str(out)]

    code, stdout, stderr = run(argv, capsys, signing_factory)
    assert (code, stderr) == (0, "")
    assert stdout.startswith(f"provisioned thing {thing_name} in us-east-1 (")
    assert f"thing        {thing_name}: created" in stdout
    assert "policy       edge-app-device: " in stdout
    assert f"edge-app aws check --config {out / 'edge-app.yaml'}" in stdout

    code, stdout, _ = run(argv, capsys, signing_factory)
    assert code == 0
    assert f"thing        {thing_name}: exists: used" in stdout

    code, stdout, stderr = run([*argv, "--teardown"], capsys, signing_factory)
    assert (code, stderr) == (0, "")
    assert stdout.startswith(f"tore down thing {thing_name} (")
    assert "detached, deactivated, deleted" in stdout
    assert not (out / "private.pem.key").exists()


def test_a_refused_certificate_is_an_error_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], moto_endpoint: str, thing_name: str
) -> None:
    def factory(region: str | None, profile: str | None, url: str | None) -> Any:
        return moto_client("iot", moto_endpoint)  # moto's CSR signing: the wrong key

    argv = ["aws", "provision", "--thing", thing_name, "--out", str(tmp_path / "dev")]
    code, stdout, stderr = run(argv, capsys, factory)
    assert (code, stdout) == (2, "")
    assert stderr.startswith("edge-app aws provision: AWS IoT returned certificate ")
    assert "run --teardown to remove it" in stderr
    assert "Traceback" not in stderr


def test_check_prints_each_step_and_the_fix(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy_broker: Mosquitto,
    fleet: dict[str, Pki],
) -> None:
    pki = fleet["thing-a"]
    config = tmp_path / "edge-app.yaml"
    doc = {
        "device": {"thing_name": "thing-a", "data_dir": str(tmp_path / "data")},
        "cameras": [{"name": "cam", "source": {"type": "usb"}}],
        "uplink": {
            "host": "127.0.0.1",
            "port": policy_broker.tls_port,
            "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
        },
    }
    config.write_text(yaml.safe_dump(doc))
    argv = ["aws", "check", "--config", str(config), "--timeout", "2"]

    code, stdout, _ = run(argv, capsys)  # no shadow service: the last step fails
    lines = stdout.splitlines()
    assert code == 1
    assert lines[0] == f"edge-app aws check: {config}"
    assert [line.split()[:2] for line in lines[1:7]] == [
        ["✓", "config"],
        ["✓", "files"],
        ["✓", "endpoint"],
        ["✓", "tls"],
        ["✓", "mqtt"],
        ["✓", "publish"],
    ]
    assert lines[7].startswith("✗ shadow    no answer to get within 2 s")
    assert lines[8].startswith("  fix: nothing answered on $aws/things/thing-a/shadow/")

    with ShadowService(policy_broker.host, policy_broker.port, client_id="cli-shadow"):
        code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert "✗" not in stdout
    assert "fix:" not in stdout


def test_policy_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(
        ["aws", "policy", "--account", "123456789012", "--region", "eu-west-1"], capsys
    )
    assert code == 0
    assert json.loads(stdout) == device_policy("aws", "eu-west-1", "123456789012")
    code, stdout, stderr = run(
        ["aws", "policy", "--account", "12", "--region", "eu-west-1"], capsys
    )
    assert (code, stdout) == (2, "")
    assert stderr == "edge-app aws policy: invalid AWS account id '12': 12 digits\n"


def no_aws_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no AWS credentials, config or region anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(tmp_path),
    )
    return env


def test_no_credentials_is_a_clear_error(tmp_path: Path, moto_endpoint: str) -> None:
    done = edge_app(
        "aws", "provision", "--thing", "cam-nocreds", "--region", "us-east-1",
        "--endpoint-url", moto_endpoint, "--out", str(tmp_path / "dev"),
        env=no_aws_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("edge-app aws provision: no AWS credentials found: run `aws ")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_no_region_is_a_clear_error(tmp_path: Path) -> None:
    done = edge_app("aws", "provision", "--thing", "cam-x", env=no_aws_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "edge-app aws provision: no AWS region: pass --region (e.g. --region eu-west-1) or set "
        "AWS_REGION\n"
    )


@pytest.mark.slow
def test_without_the_aws_extra_the_commands_say_what_to_install() -> None:
    script = (
        "import sys; sys.modules['boto3'] = None\n"  # what an install without boto3 looks like
        "from edge_app.cli import main\n"
        "sys.exit(main(['aws', 'policy', '--account', '123456789012', '--region', 'x']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr == (
        "edge-app aws: the aws commands need the boto3 package: pip install 'edge-app[aws]'\n"
    )


@pytest.mark.slow
def test_the_daemon_never_imports_boto3_or_the_aws_package() -> None:
    script = (
        "import sys\n"
        "import edge_app.app, edge_app.cli\n"
        "edge_app.cli.build_parser()\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'certifi',"
        " 'cryptography') or m.startswith('edge_app.aws')]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
