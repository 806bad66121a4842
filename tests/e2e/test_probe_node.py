"""A probe node (issue 12, item 3 "or name a probe node"): a target neither the Lambda nor its own
node can probe names another managed node (verifyFrom: node, probeNode). After the install on
the target's own node succeeded, ProbeOnProbeNode sends the install document's read-only probe
action to the probe node (the real installer on another local node, against the real embedded
server); VerifyTarget judges its evidence the way it judges a verifyFrom-node target's own."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from rollout_core.domain.serials import parse_serial

from cert_rollout.localcloud.scenario import state_outputs

from .conftest import explain, run_scenario, state_entered, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    report, data = run_scenario("probe-node.yaml")
    [entry] = report["events"]
    return {"report": report, "data": data, "entry": entry, "targets": target_by_id(entry),
            "old": report["certificates"]["web"]["serial_initial"],
            "new": report["certificates"]["web"]["serial_final"]}


def verify_exits(entry: dict[str, Any], target_id: str) -> list[dict[str, Any]]:
    return [o for o in state_outputs(entry["history"], "VerifyTarget") if o.get("targetId") == target_id]


def config_of(command: dict[str, Any]) -> dict[str, Any]:
    value = command["Parameters"]["TargetConfig"]
    return dict(json.loads(base64.b64decode(value[0] if isinstance(value, list) else value)))


def action_of(command: dict[str, Any]) -> str:
    value = command["Parameters"]["Action"]
    return str(value[0] if isinstance(value, list) else value)


def commands_for(data: dict[str, Any], target_id: str) -> dict[str, list[dict[str, Any]]]:
    """{action: [command]} of the commands that name ``target_id`` in their TargetConfig."""
    out: dict[str, list[dict[str, Any]]] = {}
    for command in data["ssm_commands"]:
        if config_of(command)["targetId"] == target_id:
            out.setdefault(action_of(command), []).append(command)
    return out


def node_of(command: dict[str, Any]) -> str:
    [invocation] = command["Invocations"]
    return str(invocation["InstanceId"])


def test_the_target_is_verified_through_its_probe_node(run: dict[str, Any]) -> None:
    entry, data, new = run["entry"], run["data"], run["new"]
    t = run["targets"]["probed-1"]
    assert t["outcome"] == "VERIFIED", explain(entry)
    own_node = data["targets"]["probed-1"]["instance_id"]
    by_action = commands_for(data, "probed-1")
    [install], [probe] = by_action["install"], by_action["probe"]
    assert node_of(install) == own_node and node_of(probe) != own_node  # the probe went to another node
    assert "verify" not in config_of(install)  # the target's own node does not probe
    assert config_of(probe)["files"] == [] and config_of(probe)["verify"]["probes"] == 3  # and gets no files
    [exit_] = verify_exits(entry, "probed-1")
    assert exit_["verify"]["state"] == "VERIFIED"
    assert exit_["probeCommand"]["instanceId"] == node_of(probe) and exit_["probeCommand"]["filesChanged"] == "no"
    served = exit_["installCommand"]["served"]  # the probe node's evidence, where VerifyTarget reads it
    assert served == exit_["probeCommand"]["served"]
    assert served["probes"] >= served["required"] == 3 and served["error"] is None
    leaf = x509.load_der_x509_certificate(bytes.fromhex(served["chain"][0]))
    assert leaf.serial_number == parse_serial(new) == parse_serial(data["targets"]["probed-1"]["served_serial_final"])
    assert len(served["chain"]) >= 2 and served["chainComplete"] is True


def test_a_probe_node_that_cannot_reach_the_target_is_named_and_nothing_is_rolled_back(run: dict[str, Any]) -> None:
    entry, data = run["entry"], run["data"]
    t = run["targets"]["probed-unreachable-1"]
    assert (t["outcome"], t["reason"]) == ("FAILED", "unreachable"), explain(entry)
    [probe] = commands_for(data, "probed-unreachable-1")["probe"]
    assert f"from probe node {node_of(probe)} to 127.0.0.1:1" in t["detail"] and "ConnectionRefused" in t["detail"]
    # it answered nobody before the install either: nothing shows the new files are at fault
    assert "rollback" not in commands_for(data, "probed-unreachable-1")
    assert entry["outcome"] == "PARTIAL"


def test_probe_nodes_get_only_probe_commands_and_each_target_is_probed_once(run: dict[str, Any]) -> None:
    # (that a probe node is no reader of the staged bundle: tests/unit/test_probe_node.py)
    data, history = run["data"], run["entry"]["history"]
    probe_nodes = {node_of(c) for t in ("probed-1", "probed-unreachable-1") for c in commands_for(data, t)["probe"]}
    own_nodes = {data["targets"][t]["instance_id"] for t in ("probed-1", "probed-unreachable-1")}
    assert probe_nodes and not probe_nodes & own_nodes
    for command in data["ssm_commands"]:
        if node_of(command) in probe_nodes:
            assert action_of(command) == "probe", command["Parameters"]
    assert len(state_entered(history, "ProbeOnProbeNode")) == 2
    assert len(state_entered(history, "WaitForReload")) == 0
