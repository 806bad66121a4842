"""What a node needs (issue 15 item 1), end to end on the local cloud.

One rollout, one certificate, five targets, each on its own node:
  stdlib-1   no `aws` on the node's PATH, the installer's standard-library client (SigV4
             GetSecretValue with the node's environment credentials): VERIFIED
  auto-1     no `aws` either, CERT_ROLLOUT_FETCH=auto: botocore (the node's python has it): VERIFIED
  cli-1      the real AWS CLI on PATH, CERT_ROLLOUT_FETCH=aws-cli (that path stays covered): VERIFIED
  nocreds-1  no credentials anywhere (fault no-credentials): FAILED bundle-credentials-missing
  foreign-1  signs as another instance's node-role session (fault foreign-credentials): the
             staged bundle's policy denies it, FAILED bundle-access-denied
The two refused nodes fail at the fetch, before any file of theirs is touched. (python-missing
and python-too-old are the document's bootstrap: tests/unit/test_install_bootstrap.py.)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import install_commands_on, run_scenario, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

VERIFIED = {"stdlib-1": "stdlib", "auto-1": "botocore", "cli-1": "aws-cli"}
REFUSED = {"nocreds-1": "bundle-credentials-missing", "foreign-1": "bundle-access-denied"}


def _node_paths(runner: Any, _report: dict[str, Any]) -> dict[str, str]:
    """Each target's node PATH, as its SSM agent gives it to commands."""
    targets = runner.targets.targets
    return {tid: runner.cloud.fleet.nodes[t.instance_id].env["PATH"] for tid, t in targets.items()}


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    if not (Path(sys.executable).parent / "aws").exists():
        pytest.skip("no AWS CLI beside this interpreter (pip install awscli)")
    report, data = run_scenario({
        "name": "node-prerequisites",
        # 20 s per subprocess: the AWS CLI alone takes seconds to start on a loaded machine
        "parameters": {"CommandTimeoutSeconds": "100"},
        "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [
            {"id": "stdlib-1", "certificate": "web"},
            {"id": "auto-1", "certificate": "web", "fetch": "auto"},
            {"id": "cli-1", "certificate": "web", "fetch": "aws-cli"},
            {"id": "nocreds-1", "certificate": "web", "fault": "no-credentials"},
            {"id": "foreign-1", "certificate": "web", "fault": "foreign-credentials"},
        ],
        "steps": [{"renew": "web"}, {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}],
    }, while_running=_node_paths)
    [entry] = report["events"]
    return {"report": report, "data": data, "entry": entry, "targets": target_by_id(entry),
            "new": report["certificates"]["web"]["serial_final"]}


def _install_result(data: dict[str, Any], target_id: str) -> tuple[dict[str, Any], str]:
    [command] = install_commands_on(data, target_id)
    invocation = command["Invocations"][0]
    line = [ln for ln in invocation["StandardOutputContent"].splitlines() if ln.startswith("ROLLOUT_RESULT ")][-1]
    return json.loads(line[len("ROLLOUT_RESULT "):]), invocation["StandardErrorContent"]


def test_nodes_without_the_aws_cli_install_and_verify(run: dict[str, Any]) -> None:
    paths = run["data"]["while_running"]
    for tid, path in VERIFIED.items():
        t = run["targets"][tid]
        assert t["outcome"] == "VERIFIED", (tid, t["reason"], t["detail"])
        assert run["data"]["targets"][tid]["served_serial_final"] == run["new"]
        result, err = _install_result(run["data"], tid)
        assert (result["status"], result["fetchPath"]) == ("ok", path), result
        has_cli = shutil.which("aws", path=paths[tid]) is not None
        assert has_cli == (path == "aws-cli"), (tid, paths[tid])
        if path == "stdlib":
            assert "bundle fetch: standard-library client, credentials from the environment" in err, err
        if path == "botocore":
            assert "bundle fetch: botocore" in err, err


def test_nodes_whose_credentials_cannot_read_the_bundle_fail_by_name_and_change_nothing(run: dict[str, Any]) -> None:
    for tid, reason in REFUSED.items():
        t = run["targets"][tid]
        assert (t["outcome"], t["reason"]) == ("FAILED", reason), t
        result, _ = _install_result(run["data"], tid)
        assert (result["exitCode"], result["stage"], result["reason"]) == (13, "fetch", reason), result
        assert "nothing changed" in result["error"] and "installedSerial" not in result
        snap = run["data"]["targets"][tid]
        assert snap["fullchain_final"] == snap["fullchain_initial"]
        assert sorted(p.name for p in snap["directory"].iterdir() if ".rollout-" in p.name) == [], tid
    denied = _install_result(run["data"], "foreign-1")[0]["error"]
    assert "AccessDeniedException" in denied and "GetSecretValue" in denied, denied


def test_the_rollout_is_partial_and_says_why(run: dict[str, Any]) -> None:
    entry = run["entry"]
    assert (entry["outcome"], entry["status"]) == ("PARTIAL", "FAILED"), entry
    assert "AWS_ACCESS_KEY_ID" in (run["targets"]["nocreds-1"]["detail"] or "")
