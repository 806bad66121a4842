"""verifyFrom: node (issue 12, item 3): a target the Lambda cannot reach is probed by its own
managed node after the reload (the real installer on a local node, against the real embedded
server); VerifyTarget decides on the node's evidence, which the execution history keeps."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from rollout_core.domain.serials import parse_serial
from rollout_core.models import Target

from cert_rollout.localcloud.scenario import state_outputs

from .conftest import explain, run_scenario, state_entered, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    report, data = run_scenario("verify-from-node.yaml")
    [entry] = report["events"]
    return {"report": report, "data": data, "entry": entry, "targets": target_by_id(entry),
            "old": report["certificates"]["web"]["serial_initial"],
            "new": report["certificates"]["web"]["serial_final"]}


def verify_exits(entry: dict[str, Any], target_id: str) -> list[dict[str, Any]]:
    """The iteration state after each VerifyTarget of ``target_id`` (its input and result)."""
    return [o for o in state_outputs(entry["history"], "VerifyTarget") if o.get("targetId") == target_id]


def test_node_verified_target_is_verified_on_its_nodes_evidence(run: dict[str, Any]) -> None:
    entry, new = run["entry"], run["new"]
    t = run["targets"]["node-1"]
    assert t["outcome"] == "VERIFIED", explain(entry)
    [exit_] = verify_exits(entry, "node-1")  # one VerifyTarget: the node already waited, no WAITING loop
    assert exit_["verify"]["state"] == "VERIFIED"
    served = exit_["installCommand"]["served"]  # the node's evidence, in the audit trail
    assert served["probes"] >= served["required"] == 3 and served["error"] is None
    leaf = x509.load_der_x509_certificate(bytes.fromhex(served["chain"][0]))
    assert leaf.serial_number == parse_serial(new) and parse_serial(exit_["verify"]["servedSerial"]) == leaf.serial_number
    assert len(served["chain"]) >= 2 and served["chainComplete"] is True  # leaf and its intermediate
    # what it served before and after, from the node (the Lambda sent it no handshake)
    assert t["served_serial_before"] == run["old"] == served["before"]
    assert t["served_serial_after"] == new == run["data"]["targets"]["node-1"]["served_serial_final"]


def test_node_seeing_the_old_serial_rolls_the_target_back(run: dict[str, Any]) -> None:
    entry, old, new = run["entry"], run["old"], run["new"]
    t = run["targets"]["node-stale-1"]
    assert (t["outcome"], t["reason"]) == ("ROLLED_BACK", "not-serving-new-serial"), explain(entry)
    assert f"expected serial {new}" in t["detail"] and f"served {old}" in t["detail"] and "from node" in t["detail"]
    [exit_] = verify_exits(entry, "node-stale-1")
    assert exit_["verify"]["state"] == "NOT_SERVING"
    assert set(exit_["installCommand"]["served"]["serialsSeen"]) == {old}
    assert t["served_serial_after"] == old == run["data"]["targets"]["node-stale-1"]["served_serial_final"]
    assert entry["outcome"] == "PARTIAL" and entry["status"] == "FAILED"


def test_node_targets_carry_their_probe_settings_to_the_node(run: dict[str, Any]) -> None:
    history = run["entry"]["history"]
    assert len(state_entered(history, "WaitForReload")) == 0  # no Lambda polling for node targets
    for command in run["data"]["ssm_commands"]:
        value = command["Parameters"]["TargetConfig"]
        config = json.loads(base64.b64decode(value[0] if isinstance(value, list) else value))
        assert config["verify"]["probes"] == 3 and config["verify"]["host"] == "127.0.0.1", config
    assert Target.model_fields["verifyFrom"].default == "lambda"
