"""``edge-app fleet rollout|status|cancel`` against moto in server mode: the ``create_job``
the command sends (document, target group, staged rollout, abort rule, timeout), the fleet view
from job executions and ``edge-config`` shadows, cancel, and one-line errors.

moto stores the rollout, abort and timeout settings as given and creates no execution per group
member (it never runs a rollout); that behaviour is proven against ``simulator.jobs`` in
``tests/remote/test_jobs_agent.py``. The fleet view's per-thing executions are made here with a
job that targets the things directly, as moto can.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from edge_app.cli import main
from tests.telemetry.aws import moto_client

MODEL_BYTES = b"TFL3" + bytes(range(200))


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_endpoint


def group_with(endpoint: str, group: str, things: list[str]) -> Any:
    iot = moto_client("iot", endpoint)
    iot.create_thing_group(thingGroupName=group)
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    return iot


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_rollout_of_a_model_file_creates_a_staged_job_with_an_abort_rule(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iot = group_with(aws_env, "fl-yard", ["fl-cam-1", "fl-cam-2"])
    model = tmp_path / "yard.tflite"
    model.write_bytes(MODEL_BYTES)
    code, out, err = run(
        ["fleet", "rollout", "--group", "fl-yard", "--model", str(model),
         "--url", "https://models.example.com/yard-3.tflite", "--ref", "yard@3",
         "--canary", "1", "--max-per-minute", "10", "--abort-failed-percent", "30",
         "--abort-min-executed", "2", "--timeout-minutes", "15", "--job-id", "fl-model-1",
         "--endpoint-url", aws_env],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith("created job fl-model-1 for thing group fl-yard: arn:aws:iot:")
    job = iot.describe_job(jobId="fl-model-1")["job"]
    group_arn = iot.describe_thing_group(thingGroupName="fl-yard")["thingGroupArn"]
    assert job["targets"] == [group_arn]
    assert job["targetSelection"] == "SNAPSHOT"
    assert job["jobExecutionsRolloutConfig"] == {
        "maximumPerMinute": 10,
        "exponentialRate": {
            "baseRatePerMinute": 1,
            "incrementFactor": 2.0,
            "rateIncreaseCriteria": {"numberOfSucceededThings": 1},
        },
    }
    assert job["abortConfig"] == {
        "criteriaList": [
            {"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 30.0,
             "minNumberOfExecutedThings": 2}
        ]
    }  # fmt: skip
    assert job["timeoutConfig"] == {"inProgressTimeoutInMinutes": 15}
    document = json.loads(iot.get_job_document(jobId="fl-model-1")["document"])
    assert document == {
        "operation": "model-update",
        "model": {
            "url": "https://models.example.com/yard-3.tflite",
            "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
            "size": len(MODEL_BYTES),
            "name": "yard",
            "version": "3",
        },
    }


def test_rollout_of_a_config_overlay_and_cancel(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iot = group_with(aws_env, "fl-dock", ["fl-cam-3"])
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("detector:\n  score_threshold: 0.6\n")
    code, out, _ = run(
        ["fleet", "rollout", "--group", "fl-dock", "--config", str(overlay), "--job-id",
         "fl-config-1", "--endpoint-url", aws_env],
        capsys,
    )  # fmt: skip
    assert code == 0, out
    document = json.loads(iot.get_job_document(jobId="fl-config-1")["document"])
    assert document == {"operation": "config", "desired": {"detector": {"score_threshold": 0.6}}}
    assert "jobExecutionsRolloutConfig" not in iot.describe_job(jobId="fl-config-1")["job"]
    code, out, _ = run(
        ["fleet", "cancel", "--job", "fl-config-1", "--endpoint-url", aws_env], capsys
    )
    assert code == 0
    assert out.startswith("canceled job fl-config-1")
    assert iot.describe_job(jobId="fl-config-1")["job"]["status"] == "CANCELED"


def test_status_shows_each_things_execution_and_what_its_shadow_reports(
    aws_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    iot = group_with(aws_env, "fl-view", ["fl-view-1", "fl-view-2"])
    arn = iot.describe_thing(thingName="fl-view-1")["thingArn"]
    iot.create_job(
        jobId="fl-view-job", targets=[arn], document='{"operation":"config","desired":{}}'
    )
    data = moto_client("iot-data", aws_env)
    reported = {
        "config": {"version": 7, "model": {"name": "yard", "sha256": "ab" * 6, "version": "3"}}
    }
    data.update_thing_shadow(
        thingName="fl-view-1",
        shadowName="edge-config",
        payload=json.dumps({"state": {"reported": reported}}).encode(),
    )
    code, out, err = run(
        ["fleet", "status", "--group", "fl-view", "--job", "fl-view-job", "--json",
         "--endpoint-url", aws_env, "--data-endpoint-url", aws_env],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    rows = {r["thing"]: r for r in map(json.loads, out.splitlines())}
    assert rows["fl-view-1"]["execution"] == "QUEUED"
    assert rows["fl-view-1"]["model"] == f"yard@3 ({'ab' * 6})"
    assert rows["fl-view-1"]["config_version"] == "7"
    assert (rows["fl-view-2"]["execution"], rows["fl-view-2"]["model"]) == ("-", "-")
    code, out, _ = run(
        ["fleet", "status", "--group", "fl-view", "--job", "fl-view-job",
         "--endpoint-url", aws_env, "--data-endpoint-url", aws_env],
        capsys,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0].split() == ["THING", "EXECUTION", "STAGE", "MODEL", "CONFIG", "REASON"]
    assert lines[1].split()[:2] == ["fl-view-1", "QUEUED"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["fleet", "rollout", "--group", "fl-missing", "--config", "{overlay}"],
            "edge-app fleet rollout: thing group fl-missing not found: create it",
        ),
        (
            ["fleet", "status", "--group", "fl-missing"],
            "edge-app fleet status: thing group fl-missing not found",
        ),
        (
            ["fleet", "cancel", "--job", "fl-no-such-job"],
            "edge-app fleet cancel: job fl-no-such-job not found",
        ),
        (
            ["fleet", "rollout", "--group", "g", "--config", "{bad}"],
            "edge-app fleet rollout: invalid config overlay: detector.score_threshold",
        ),
        (
            ["fleet", "rollout", "--group", "g", "--config", "{broken}"],
            "edge-app fleet rollout: {broken} is not valid YAML: while parsing",
        ),
        (
            ["fleet", "rollout", "--group", "g", "--config", "{tmp}/none.yaml"],
            "edge-app fleet rollout: [Errno 2] No such file or directory",
        ),
        (
            ["fleet", "rollout", "--group", "g", "--model", "{overlay}"],
            "edge-app fleet rollout: a model rollout needs --url",
        ),
        (
            [
                "fleet",
                "rollout",
                "--group",
                "g",
                "--model-entry",
                "nope@1",
                "--url",
                "https://x/y",
                "--model-dir",
                "{tmp}",
            ],
            "edge-app fleet rollout: model nope@1 is not in the registry",
        ),
    ],
    ids=[
        "unknown-group",
        "status-unknown-group",
        "unknown-job",
        "bad-overlay",
        "broken-yaml",
        "missing-overlay",
        "no-url",
        "unknown-entry",
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    aws_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    overlay, bad = tmp_path / "overlay.yaml", tmp_path / "bad.yaml"
    broken = tmp_path / "broken.yaml"
    overlay.write_text("detector:\n  score_threshold: 0.6\n")
    bad.write_text("detector:\n  score_threshold: lots\n")
    broken.write_text("detector: [unclosed\n")
    paths = {"{overlay}": overlay, "{bad}": bad, "{tmp}": tmp_path, "{broken}": broken}

    def filled(text: str) -> str:
        for key, path in paths.items():
            text = text.replace(key, str(path))
        return text

    argv = [filled(a) for a in argv] + ["--endpoint-url", aws_env]
    message = filled(message)
    if argv[1] == "status":
        argv += ["--data-endpoint-url", aws_env]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith(message), err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_no_credentials_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = run(
        ["fleet", "cancel", "--job", "x", "--region", "us-east-1", "--endpoint-url", moto_endpoint],
        capsys,
    )
    assert code == 2
    assert err.startswith("edge-app fleet cancel: no AWS credentials found")
