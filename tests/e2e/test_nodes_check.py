"""`cert-rollout nodes check` against the local cloud's nodes (issue 15 item 2): the preflight
passes on a healthy node and names the missing prerequisite on a broken one, touching nothing.

One certificate, three targets, each on its own node, no rollout:
  web-1       healthy: every check passes (the bundle fetch proven by ResourceNotFoundException
              for a name under the staged prefix, signed with the node's own role session)
  nocreds-1   no credentials anywhere (fault no-credentials): bundle-credentials-missing
  nopython-1  the node's PATH has no python3 (only the tools the bootstrap calls before it):
              python-missing, from the document's bootstrap
and a fourth node alone, its agent offline (fault agent-offline): agent-offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cert_rollout.cli import app
from tests.e2e.conftest import run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _files(directory: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def _check(runner: Any, _report: dict[str, Any]) -> dict[str, Any]:
    cloud = runner.cloud
    targets = runner.targets.targets
    bin_dir = Path(tempfile.mkdtemp(prefix="nopython-bin-"))
    for tool in ("date", "tr"):
        os.symlink(f"/bin/{tool}" if os.path.exists(f"/bin/{tool}") else f"/usr/bin/{tool}", bin_dir / tool)
    cloud.fleet.nodes[targets["nopython-1"].instance_id].env["PATH"] = str(bin_dir)
    before = {tid: _files(t.directory) for tid, t in targets.items()}
    opts = ["--inventory-table", cloud.outputs["InventoryTableName"],
            "--document", cloud.outputs["InstallBundleDocumentName"],
            "--installer-layer-arn", cloud.outputs["InstallerLayerArn"],
            "--region", cloud.region, "--endpoint-url", cloud.endpoint, "--json"]
    cli = CliRunner()
    by_cert = cli.invoke(app, ["nodes", "check", "--certificate", runner.certificate_arns["web"], *opts],
                         catch_exceptions=False)
    offline = cli.invoke(app, ["nodes", "check", "--instance-id", targets["offline-1"].instance_id, "--timeout", "3",
                               *opts], catch_exceptions=False)
    table = cli.invoke(app, ["nodes", "check", "--instance-id", targets["web-1"].instance_id,
                             *[o for o in opts if o != "--json"]], catch_exceptions=False)
    return {"by_cert": (by_cert.exit_code, by_cert.stdout), "offline": (offline.exit_code, offline.stdout),
            "table": (table.exit_code, table.stdout), "before": before,
            "after": {tid: _files(t.directory) for tid, t in targets.items()},
            "nodes": {tid: t.instance_id for tid, t in targets.items()},
            "state_dirs": {tid: sorted(os.listdir(cloud.fleet.nodes[t.instance_id].workdir))
                           for tid, t in targets.items()}}


@pytest.fixture(scope="module")
def checked() -> dict[str, Any]:
    _report, data = run_scenario({
        "name": "nodes-check",
        "certificates": {"web": {"domain": "web.internal.example"}, "other": {"domain": "other.internal.example"}},
        "targets": [
            {"id": "web-1", "certificate": "web"},
            {"id": "nocreds-1", "certificate": "web", "fault": "no-credentials"},
            {"id": "nopython-1", "certificate": "web"},
            {"id": "offline-1", "certificate": "other", "fault": "agent-offline"},
        ],
        "steps": [{"sleep": 0}],
    }, while_running=_check)
    return dict(data["while_running"])


def _rows(output: str) -> dict[str, dict[str, Any]]:
    return {row["targetId"]: row for row in json.loads(output)["nodes"]}


def test_healthy_node_passes_and_broken_ones_are_named(checked: dict[str, Any]) -> None:
    code, out = checked["by_cert"]
    assert code == 1, out
    rows = _rows(out)
    assert set(rows) == {"web-1", "nocreds-1", "nopython-1"}
    healthy = rows["web-1"]
    assert healthy["ok"] and healthy["reasons"] == [], healthy
    assert healthy["agent"]["ping"] == "Online" and healthy["python"]
    checks = {c["check"]: c for c in healthy["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    assert set(checks) == {"python", "node-policy", "files-writable", "state-dir", "openssl", "test-command",
                           "reload-command", "bundle-fetch"}
    assert "ResourceNotFoundException" in checks["bundle-fetch"]["detail"]
    assert rows["nocreds-1"]["instanceId"] == checked["nodes"]["nocreds-1"]
    assert (rows["nocreds-1"]["ok"], rows["nocreds-1"]["reasons"]) == (False, ["bundle-credentials-missing"])
    assert (rows["nopython-1"]["ok"], rows["nopython-1"]["reasons"]) == (False, ["python-missing"])


def test_offline_agent_is_named(checked: dict[str, Any]) -> None:
    code, out = checked["offline"]
    assert code == 1, out
    [row] = json.loads(out)["nodes"]
    assert row["instanceId"] == checked["nodes"]["offline-1"] and row["reasons"] == ["agent-offline"], row


def test_table_of_a_healthy_node_exits_0(checked: dict[str, Any]) -> None:
    code, out = checked["table"]
    assert code == 0, out
    assert checked["nodes"]["web-1"] in out and "pass" in out


def test_the_check_touched_no_target_file_and_no_state(checked: dict[str, Any]) -> None:
    assert checked["after"] == checked["before"]
    for tid, names in checked["state_dirs"].items():
        assert not any(n.startswith("state") for n in names), (tid, names)
