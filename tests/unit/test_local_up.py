"""`cert-rollout local up | env | down` (commands/local_up.py) without a cloud: the exports a
second terminal sources, the pid file, and renew --follow's switch from a duplicate execution to
the one that claimed the serial (commands/renew.py duplicate_of)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from typer.testing import CliRunner

from cert_rollout.cli import app
from cert_rollout.commands import local_up
from cert_rollout.commands.renew import _follow_rollout, duplicate_of

PREFIX = "arn:aws:states:eu-west-1:123456789012:execution:sm"
OUTPUTS = {"RolloutStateMachineArn": "arn:aws:states:eu-west-1:123456789012:stateMachine:sm",
           "InventoryTableName": "inv", "InstallBundleDocumentName": "doc",
           "InstallerLayerArn": "arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1"}


def fake_cloud() -> Any:
    deployment = SimpleNamespace(parameters={"ManagedCertificateTag": "team a's", "SecretPrefix": "cert-rollout"})
    return SimpleNamespace(deployment=deployment, outputs=OUTPUTS, stack_name="cert-rollout-local",
                           pca=SimpleNamespace(sub_arn="arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/c"),
                           aws_env=lambda: {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_REGION": "eu-west-1",
                                            "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "localcloud",
                                            "AWS_SECRET_ACCESS_KEY": "localcloud"})


def test_exports_source_in_sh_to_the_same_values(tmp_path: Path) -> None:
    env = local_up.cloud_environment(fake_cloud(), tmp_path / "stack-outputs.json",
                                     {"web": "arn:aws:acm:eu-west-1:123456789012:certificate/1", "api-2.x": "a$b"})
    script = tmp_path / "env"
    script.write_text(local_up.render_exports(env))
    shown = subprocess.run(["sh", "-c", f'. "{script}" && env -0'], capture_output=True, check=True,
                           env={"PATH": os.environ["PATH"], "AWS_PROFILE": "elsewhere", "AWS_SESSION_TOKEN": "x"}).stdout
    got = dict(line.split("=", 1) for line in shown.decode().split("\0") if "=" in line)
    for key, value in env.items():
        assert got[key] == value, key
    assert "AWS_PROFILE" not in got and "AWS_SESSION_TOKEN" not in got  # never mixed with another identity
    assert got["CERT_ROLLOUT_CERT_WEB"].endswith("certificate/1")
    assert got["CERT_ROLLOUT_CERT_API_2_X"] == "a$b"
    assert got["CERT_ROLLOUT_MANAGED_TAG"] == "team a's"
    assert got["AWS_PAGER"] == ""
    assert got["CERT_ROLLOUT_STACK_OUTPUTS"] == str((tmp_path / "stack-outputs.json").resolve())


def test_env_and_down_when_nothing_is_up(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["local", "env", "--dir", str(tmp_path)])
    assert r.exit_code == 1 and "no local cloud is up" in r.output
    (tmp_path / "pid").write_text("999999999\n")  # stale: no such process
    r = runner.invoke(app, ["local", "down", "--dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "no local cloud was up" in r.output
    assert not (tmp_path / "pid").exists()


def test_a_pid_of_another_program_is_not_a_local_cloud(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "pid").write_text(f"{proc.pid}\n")
        assert local_up.running_pid(tmp_path) is None
        assert local_up.stop_local_cloud(tmp_path, timeout=1) is None
        assert proc.poll() is None  # down never signals a process that is no local up
    finally:
        proc.kill()
        proc.wait()


def test_down_stops_a_local_up_by_its_pid_file(tmp_path: Path) -> None:
    # a stand-in whose command line names cert_rollout and that exits on SIGTERM
    proc = subprocess.Popen([sys.executable, "-c", "import time, cert_rollout; time.sleep(60)"])
    try:
        (tmp_path / "pid").write_text(f"{proc.pid}\n")
        assert local_up.running_pid(tmp_path) == proc.pid
        assert local_up.stop_local_cloud(tmp_path, timeout=10) == proc.pid
        assert proc.wait(5) is not None
        assert not (tmp_path / "pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def history(decision: str, duplicate: str | None = None) -> list[dict[str, Any]]:
    rollout = {"decision": decision, **({"duplicateOf": duplicate} if duplicate else {})}
    return [{"id": 1, "type": "TaskStateExited", "timestamp": datetime.now(UTC),
             "stateExitedEventDetails": {"name": "ValidateEvent", "output": json.dumps({"rollout": rollout})}}]


def test_duplicate_of_names_the_claiming_execution() -> None:
    assert duplicate_of(f"{PREFIX}:b", history("ALREADY_DEPLOYED", "a")) == f"{PREFIX}:a"
    assert duplicate_of(f"{PREFIX}:a", history("ROLLOUT")) is None
    assert duplicate_of(f"{PREFIX}:a", history("ALREADY_DEPLOYED")) is None  # every target already serves it
    assert duplicate_of(f"{PREFIX}:a", []) is None


class FakeSfn:
    """Two executions after one renewal: b (newest, the ACM event's) is a duplicate of a."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.executions = [{"executionArn": f"{PREFIX}:a", "startDate": now},
                           {"executionArn": f"{PREFIX}:b", "startDate": now}]
        self.histories = {f"{PREFIX}:a": history("ROLLOUT"), f"{PREFIX}:b": history("ALREADY_DEPLOYED", "a")}

    def list_executions(self, **_: Any) -> dict[str, Any]:
        return {"executions": list(reversed(self.executions))}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        return {"executionArn": executionArn, "status": "SUCCEEDED"}

    def get_execution_history(self, executionArn: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"events": self.histories[executionArn]}


def test_follow_switches_from_a_duplicate_to_the_claiming_rollout() -> None:
    from rich.console import Console

    sfn = FakeSfn()
    sfn.executions[1]["startDate"] = sfn.executions[0]["startDate"].replace(microsecond=999999)
    started = sfn.executions[0]["startDate"].replace(microsecond=0)
    execution, code = _follow_rollout(sfn, OUTPUTS["RolloutStateMachineArn"], started, 1, 5, True,
                                      Console(stderr=True))
    assert code == 0
    assert execution is not None and execution["executionArn"] == f"{PREFIX}:a"
