"""A target's probe node (models.Target.probeNode, issue 12 item 3 "or name a probe node"): the
model's rules, the probe command InstallTarget sends (logic/commands.py, action "probe"), the
installer's read-only probe action (installer/install_bundle.py do_probe, the same probe_served
as verifyFrom node), what VerifyTarget says about the probe node's evidence, and that the probe
node is never a reader of the staged bundle (logic/export.py rollout_targets)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from rollout_core.contracts import CommandResult, IterationState
from rollout_core.logic.commands import TargetNotInRollout, command_status, send_target_command
from rollout_core.logic.export import rollout_targets
from rollout_core.logic.verify_node import node_served_after
from rollout_core.logic.waiting import waiting_task_key
from rollout_core.probe import format_serial_hex

from tests.fakes.world import ARN, ROLLOUT_ID, World, target, world
from tests.unit.test_commands_with_fakes import SECRET_ARN, SETTINGS
from tests.unit.test_installer import Node, node, pki  # noqa: F401 - fixtures
from tests.unit.test_installer_node_verify import SNI, chain_serials, node_target
from tests.unit.test_target_server import HOST, free_ports, servers, wait_for_serial  # noqa: F401 - fixture
from tests.unit.test_verify_node import NEW_SERIAL, evidence, judge

PROBE_NODE = "i-0fedcba9876543210"
OWN_NODE = "mi-0123456789abcdef0"  # tests.fakes.world.target's instanceId


def probed(target_id: str = "web-1", **changes):
    return target(target_id, **{"verifyFrom": "node", "probeNode": PROBE_NODE, **changes})


# --------------------------------------------------------------------------- the model


def test_a_probe_node_is_a_managed_node_id_and_needs_verify_from_node() -> None:
    assert probed().probeNode == PROBE_NODE
    with pytest.raises(ValidationError, match=r"probeNode 'node-7' is not an SSM managed node id"):
        probed(probeNode="node-7")
    with pytest.raises(ValidationError, match="probeNode i-0fedcba9876543210 needs verifyFrom: node"):
        target(probeNode=PROBE_NODE)
    with pytest.raises(ValidationError, match="is the target's own node"):
        probed(probeNode=OWN_NODE)
    assert target().probeNode is None


def test_with_a_probe_node_the_targets_own_node_does_not_probe_and_the_probe_node_gets_no_files() -> None:
    t = probed()
    assert "verify" not in t.install_settings()  # its own node installs only
    assert "verify" in target(verifyFrom="node").install_settings()
    probe = t.probe_settings()
    assert probe == {"targetId": "web-1", "server": "nginx", "files": [], "testCommand": None, "reloadCommand": None,
                     "verify": {"host": "127.0.0.1", "port": 8443, "sni": "web.internal.example", "probes": 3}}
    assert json.loads(base64.b64decode(t.probe_settings_b64())) == probe
    with pytest.raises(ValueError, match="no probeNode"):
        target().probe_settings()


# --------------------------------------------------------------------------- the command


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(probed())
    return fakes


def send(w: World, action: str):
    return send_target_command(action, ARN, "web-1", ROLLOUT_ID, w.certificates.serial(ARN), SECRET_ARN, "v-1",
                               settings=SETTINGS, inventory=w.inventory, commands=w.commands,
                               waiting_tasks=w.waiting_tasks, probe=w.probe, installer=w.installer,
                               task_token=f"token-{action}")


def sent(w: World) -> list[dict]:
    return [dict(args) for op, args in w.commands.calls if op == "send"]


def test_the_install_goes_to_the_targets_node_and_the_probe_to_the_probe_node(w: World) -> None:
    install = send(w, "install")
    probe = send(w, "probe")
    [to_own, to_probe] = sent(w)
    assert (install.instanceId, to_own["instance_id"]) == (OWN_NODE, OWN_NODE)
    assert (probe.instanceId, to_probe["instance_id"]) == (PROBE_NODE, PROBE_NODE)
    assert to_probe["parameters"]["Action"] == "probe"
    config = json.loads(base64.b64decode(to_probe["parameters"]["TargetConfig"]))
    assert config["files"] == [] and config["verify"]["port"] == 8443
    assert w.probe.calls == []  # the Lambda sent the target no handshake, before or after
    # the install's context names the probe node: CommandResult.probeNode, read by InstallFinished
    records = w.waiting_tasks.records
    assert json.loads(records[waiting_task_key(ROLLOUT_ID, "web-1", "install")]["context"])["probeNode"] == PROBE_NODE
    assert json.loads(records[waiting_task_key(ROLLOUT_ID, "web-1", "probe")]["context"])["probeNode"] is None


def test_a_probe_for_a_target_without_a_probe_node_is_refused_before_anything_is_sent() -> None:
    fakes = world()
    fakes.inventory.add(target("web-1", verifyFrom="node"))
    with pytest.raises(TargetNotInRollout, match="names no probeNode"):
        send(fakes, "probe")
    assert sent(fakes) == []


def test_a_probe_command_never_changed_files_and_fails_by_its_own_name() -> None:
    failed = command_status("c-1", PROBE_NODE, invocation={"Status": "Failed", "ResponseCode": 2,
                                                            "StandardOutputContent": ""}, action="probe")
    assert (failed.state, failed.reason, failed.filesChanged) == ("FAILED", "probe-failed", "no")
    line = "ROLLOUT_RESULT " + json.dumps({"action": "probe", "status": "ok", "stage": "probe",
                                            "served": evidence().model_dump(mode="json")})
    ok = command_status("c-1", PROBE_NODE, invocation={"Status": "Success", "ResponseCode": 0,
                                                        "StandardOutputContent": line}, action="probe")
    assert (ok.state, ok.filesChanged) == ("SUCCEEDED", "no") and ok.served == evidence()


# --------------------------------------------------------------------------- the verdict


def test_the_verdict_names_the_probe_node() -> None:
    from rollout_core.logic.verify_node import verify_from_node_evidence

    from tests.unit.test_verify_node import NEW_PKI, NOW, SINCE
    from tests.unit.test_verify_node import SETTINGS as VERIFY_SETTINGS

    def judge_probed(served):
        return verify_from_node_evidence(served, NEW_SERIAL, since=SINCE, target=probed(), settings=VERIFY_SETTINGS,
                                         anchors=(NEW_PKI.root_cert,), now=NOW)

    assert judge_probed(evidence()).state == "VERIFIED" == judge(evidence()).state
    refused = judge_probed(evidence(chain=[], serialsSeen=[], probes=0, error="127.0.0.1:8443 (SNI -): "
                                    "ConnectionRefusedError: [Errno 111] Connection refused"))
    assert (refused.state, refused.reason) == ("UNREACHABLE", "unreachable")
    assert f"from probe node {PROBE_NODE} to 127.0.0.1:8443" in refused.detail and "Connection refused" in refused.detail
    none = judge_probed(None)
    assert none.reason == "unreachable" and "ProbeOnProbeNode" in none.detail


def test_after_a_rollback_nothing_the_probe_node_saw_before_is_reported_as_served_after() -> None:
    item = {"targetId": "web-1", "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "expectedSerial": NEW_SERIAL,
            "secretArn": SECRET_ARN, "secretVersionId": "v-1", "taskTimeoutSeconds": 900, "trustAnchor": "x"}
    seen = CommandResult(state="SUCCEEDED", filesChanged="yes", served=evidence())
    rolled_back = CommandResult(state="SUCCEEDED", filesChanged="yes", action="rollback")
    assert node_served_after(IterationState(**item, installCommand=seen, probeCommand=seen)) == NEW_SERIAL
    assert node_served_after(IterationState(**item, installCommand=seen, probeCommand=seen,
                                            rollbackCommand=rolled_back)) is None


def test_the_probe_node_is_no_reader_of_the_staged_bundle(w: World) -> None:
    nodes, _ = rollout_targets(ARN, ["web-1"], inventory=w.inventory)
    assert nodes == [OWN_NODE] and PROBE_NODE not in nodes


# --------------------------------------------------------------------------- the installer


@pytest.mark.timeout(60)
def test_the_probe_action_reports_what_another_node_serves_and_touches_nothing(node, pki, servers,  # noqa: F811
                                                                               tmp_path: Path) -> None:
    (port,) = free_ports(1)
    target_, config, pid = node_target(node, port)
    node.put_secret(pki["new"])
    assert node.run("install", dict(target_, verify=None))[0] == 0  # the target's own node: files only
    servers(config, pid, node.tmp / "server.log")
    wait_for_serial(port, SNI, pki["new"].serial)

    (tmp_path / "probe-node").mkdir()
    probe_node = Node(tmp_path / "probe-node")  # another node: no secret, no files of the target
    probe = {"targetId": "web-1", "server": "generic", "files": [], "testCommand": None, "reloadCommand": None,
             "verify": target_["verify"]}
    code, result = probe_node.run("probe", probe, expected_serial=format_serial_hex(pki["new"].serial),
                                  extra_env={"ROLLOUT_COMMAND_TIMEOUT": "10"})
    assert code == 0, result
    assert (result["action"], result["status"], result["stage"]) == ("probe", "ok", "probe")
    served = result["served"]
    assert served["probes"] == served["required"] == 3 and served["error"] is None
    assert chain_serials(served)[0] == pki["new"].serial
    assert not probe_node.aws_args.exists()  # it fetched nothing
    assert not probe_node.state.exists()  # no lock, journal or backup


@pytest.mark.timeout(60)
def test_a_probe_node_that_cannot_reach_the_target_reports_it_and_a_probe_with_files_is_refused(
        tmp_path: Path, pki) -> None:  # noqa: F811
    (port,) = free_ports(1)  # nothing listens
    (tmp_path / "probe-node").mkdir()
    probe_node = Node(tmp_path / "probe-node")
    probe = {"targetId": "web-1", "server": "generic", "files": [], "testCommand": None, "reloadCommand": None,
             "verify": {"host": HOST, "port": port, "sni": SNI, "probes": 3}}
    started = time.monotonic()
    code, result = probe_node.run("probe", probe, expected_serial=format_serial_hex(pki["new"].serial),
                                  extra_env={"ROLLOUT_COMMAND_TIMEOUT": "2"})
    assert code == 0 and result["served"]["chain"] == [] and "ConnectionRefused" in result["served"]["error"]
    assert time.monotonic() - started < 15
    files = [{"path": str(tmp_path / "x.pem"), "content": "fullchain", "mode": "0644"}]
    code, result = probe_node.run("probe", dict(probe, files=files))
    assert code == 2 and "carries no files or commands" in result["error"]
    assert not (tmp_path / "x.pem").exists()
    code, result = probe_node.run("probe", dict(probe, verify=None))
    assert code == 2 and "verify must be an object" in result["error"]
