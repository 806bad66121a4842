"""`cert-rollout local up --detach --scenario tests/e2e/scenarios/local-up.yaml`, then, as a second
terminal with only its exports (no AWS profile, no credentials of its own): `targets list`,
`status`, `renew ARN --follow` (the renewal's own Health and ACM events start the rollout through
the template's rules), `history ARN`, `aws acm list-certificates`; then `local down` leaves no
process (issue 14, items 1 and 2, first "Done when" line).

The processes checked after `local down`: the `local up` (its pid file), everything that was
its descendant while it was up (Lambda workers, target servers, nginx, node commands) and every
process whose command line names its directory. Nothing is killed by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from cert_rollout.localcloud import real_servers
from tests.e2e.conftest import SCENARIOS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent
CLI = str(BIN / "cert-rollout")
AWS = str(BIN / "aws")


def processes() -> dict[int, tuple[int, str, str]]:
    """{pid: (ppid, state, args)} of every process (ps)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        table[int(pid)] = (int(ppid), stat, args[0] if args else "")
    return table


def descendants(root: int, table: dict[int, tuple[int, str, str]]) -> set[int]:
    found = {root}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def watch(pid: int, marker: str) -> set[int]:
    """``pid``, its descendants and every process naming ``marker``, now."""
    table = processes()
    return descendants(pid, table) | {p for p, (_, _, args) in table.items() if marker in args}


def running(pids: set[int], marker: str) -> dict[int, str]:
    """Those of ``pids`` still running (a zombie has ended) and any process naming ``marker``."""
    table = processes()
    return {pid: args for pid, (_, stat, args) in table.items()
            if not stat.startswith("Z") and pid != os.getpid() and (pid in pids or marker in args)}


def scenario_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """local-up.yaml, plus a real nginx target when nginx is installed (its master daemon must
    go too). Returns (the scenario file, its target ids)."""
    raw = yaml.safe_load((SCENARIOS / "local-up.yaml").read_text())
    if real_servers.available("nginx"):
        raw["targets"].append({"id": "web-nginx", "certificate": "web", "server": "nginx"})
    path = tmp_path / "local-up.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, [t["id"] for t in raw["targets"]]


def terminal_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A new user's shell: PATH and HOME, no AWS variable, plus ``extra``."""
    return {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8", **(extra or {})}


def sourced(env_file: Path, cwd: Path) -> dict[str, str]:
    """The environment after `source env_file` in terminal_env's shell."""
    out = subprocess.run(["sh", "-c", f'. "{env_file}" && env -0'], capture_output=True, check=True, cwd=cwd,
                         env=terminal_env({"AWS_PROFILE": "no-such-profile"})).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def show(r: subprocess.CompletedProcess[str]) -> str:
    return f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"


def executions_of(env: dict[str, str]) -> list[dict[str, Any]]:
    """Every execution with its input's source and ValidateEvent's rollout decision."""
    sfn = boto3.client("stepfunctions", region_name=env["AWS_DEFAULT_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"],
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    found = []
    for x in sfn.list_executions(stateMachineArn=env["CERT_ROLLOUT_STATE_MACHINE_ARN"])["executions"]:
        events = sfn.get_execution_history(executionArn=x["executionArn"], maxResults=1000)["events"]
        validated = [json.loads(e["stateExitedEventDetails"]["output"]) for e in events
                     if e.get("stateExitedEventDetails", {}).get("name") == "ValidateEvent"]
        source = json.loads(sfn.describe_execution(executionArn=x["executionArn"])["input"]).get("source")
        rollout = validated[-1]["rollout"] if validated else {}
        found.append({"arn": x["executionArn"], "status": x["status"], "source": source,
                      "decision": rollout.get("decision"), "duplicateOf": rollout.get("duplicateOf")})
    return found


def test_local_up_serves_the_operator_commands_and_down_leaves_no_process(tmp_path: Path) -> None:
    scenario, target_ids = scenario_file(tmp_path)
    state = tmp_path / "cloud"
    up = run([CLI, "local", "up", "--detach", "--scenario", str(scenario), "--dir", str(state)],
             terminal_env(), tmp_path)
    pid_file = state / "pid"
    watched: set[int] = set()
    try:
        assert up.returncode == 0, show(up) + "\nlog:\n" + (state / "log").read_text()[-3000:]
        assert re.search(r"^export AWS_ENDPOINT_URL=http://127\.0\.0\.1:\d+$", up.stdout, re.M), up.stdout
        assert up.stdout == (state / "env").read_text()
        env_out = run([CLI, "local", "env", "--dir", str(state)], terminal_env(), tmp_path)
        assert env_out.returncode == 0 and env_out.stdout == up.stdout, show(env_out)

        pid = int(pid_file.read_text())
        watched = watch(pid, str(state))

        env = sourced(state / "env", tmp_path)
        assert "AWS_PROFILE" not in env
        cert = env["CERT_ROLLOUT_CERT_WEB"]

        listed = run([CLI, "targets", "list", "--json"], env, tmp_path)
        assert listed.returncode == 0, show(listed)
        assert sorted(t["targetId"] for t in json.loads(listed.stdout)) == sorted(target_ids)

        before = run([CLI, "status", "--json"], env, tmp_path)
        assert before.returncode == 1, show(before)  # nothing deployed by this product yet: drift
        assert json.loads(before.stdout)["drift"] is True

        renewed = run([CLI, "renew", cert, "--follow", "--wait", "60", "--timeout", "300"], env, tmp_path)
        assert renewed.returncode == 0, show(renewed)
        assert "Execution SUCCEEDED" in renewed.stdout, show(renewed)
        for target in target_ids:
            assert re.search(rf"^  {re.escape(target)}: VERIFIED", renewed.stdout, re.M), show(renewed)
        followed = re.search(r"^Following (\S+)$", renewed.stderr, re.M)
        assert followed, show(renewed)
        arn = followed.group(1)

        history = run([CLI, "history", arn], env, tmp_path)
        assert history.returncode == 0, show(history)
        assert "SUCCEEDED" in history.stdout

        after = run([CLI, "status", "--json"], env, tmp_path)
        assert after.returncode == 0, show(after)
        [entry] = json.loads(after.stdout)["certificates"]
        assert all(t["lastDeployedSerial"] == entry["serial"] for t in entry["targets"]), entry

        certificates = run([AWS, "acm", "list-certificates"], env, tmp_path)
        assert certificates.returncode == 0, show(certificates)
        assert cert in [c["CertificateArn"] for c in json.loads(certificates.stdout)["CertificateSummaryList"]]

        # Both announcements of the renewal started an execution through the template's rules; the
        # serial's claim made the second a no-op (ALREADY_DEPLOYED, a duplicate of the followed one).
        deadline = time.monotonic() + 60
        while True:
            executions = executions_of(env)
            if len(executions) == 2 and all(x["status"] != "RUNNING" for x in executions) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sorted(x["source"] for x in executions) == ["aws.acm", "aws.health"], executions
        rolled = [x for x in executions if x["decision"] == "ROLLOUT"]
        duplicates = [x for x in executions if x["decision"] == "ALREADY_DEPLOYED"]
        assert [x["arn"] for x in rolled] == [arn], executions
        assert [x["duplicateOf"] for x in duplicates] == [arn.rsplit(":", 1)[-1]], executions
        assert all(x["status"] == "SUCCEEDED" for x in executions), executions

        watched |= watch(pid, str(state))  # the Lambda workers start on first use
        kinds = [args for p, (_, _, args) in processes().items() if p in watched]
        assert any("lambda_worker" in a for a in kinds), kinds
        assert sum("target_server" in a for a in kinds) >= 2, kinds
        if "web-nginx" in target_ids:
            assert any("nginx: master" in a for a in kinds), kinds

        down = run([CLI, "local", "down", "--dir", str(state)], terminal_env(), tmp_path)
        assert down.returncode == 0, show(down)
        assert f"stopped (pid {pid})" in down.stderr
        assert not pid_file.exists() and not (state / "env").exists()
        deadline = time.monotonic() + 10  # init reaps the ended processes
        while running(watched, str(state)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running(watched, str(state)) == {}
        again = run([CLI, "local", "env", "--dir", str(state)], terminal_env(), tmp_path)
        assert again.returncode == 1 and "no local cloud is up" in again.stderr
    finally:
        if pid_file.exists():
            run([CLI, "local", "down", "--dir", str(state), "--timeout", "30"], terminal_env(), tmp_path)
        for leftover in running(watched, str(state)):  # only what this test started
            try:
                os.kill(leftover, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_local_up_in_the_foreground_on_a_given_port_stops_on_ctrl_c(tmp_path: Path) -> None:
    from cert_rollout.localcloud.cloud import free_port

    port = free_port()
    state = tmp_path / "cloud"
    # its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to the whole group
    proc = subprocess.Popen([CLI, "local", "up", "--port", str(port), "--dir", str(state)], cwd=tmp_path,
                            env=terminal_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    watched: set[int] = {proc.pid}
    try:
        deadline = time.monotonic() + 300
        while not (state / "env").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (state / "env").exists(), proc.poll()
        env = sourced(state / "env", tmp_path)
        assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert "CERT_ROLLOUT_PRIVATE_CA_ARN" in env and not any(k.startswith("CERT_ROLLOUT_CERT_") for k in env)
        listed = run([AWS, "acm-pca", "list-certificate-authorities"], env, tmp_path)
        assert listed.returncode == 0, show(listed)
        assert env["CERT_ROLLOUT_PRIVATE_CA_ARN"] in listed.stdout
        empty = run([CLI, "targets", "list", "--json"], env, tmp_path)
        assert empty.returncode == 0 and json.loads(empty.stdout) == [], show(empty)
        watched |= watch(proc.pid, str(state))
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        assert out.startswith("unset AWS_SESSION_TOKEN") and "export AWS_ENDPOINT_URL=" in out
        assert "stopping the local cloud" in err
        assert not (state / "pid").exists() and not (state / "env").exists()
        deadline = time.monotonic() + 10
        while running(watched, str(state)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running(watched, str(state)) == {}
    finally:
        for leftover in running(watched, str(state)):
            try:
                os.kill(leftover, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
