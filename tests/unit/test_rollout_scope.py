"""InstallTarget sends the install document only to the node of an inventory target of the
rollout's certificate (issue 11, item 4): the check in code (logic/commands.py
rollout_instance_id, named error TargetNotInRollout failing that target only) and the IAM side
(template.yaml InstallTargetFunction: SendCommand split into the document and the nodes, the
nodes optionally narrowed by TargetNodeTag through ssm:resourceTag)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rollout_core.contracts import IterationState
from rollout_core.domain.managed import MANAGED_TAG_KEY
from rollout_core.logic.commands import TargetNotInRollout, send_target_command
from rollout_core.logic.outcome import classify
from rollout_core.logic.waiting import waiting_task_key
from rollout_core.models import TargetOutcome
from rollout_core.settings import InstallSettings
from samtranslator.yaml_helper import yaml_parse

from tests.fakes.world import ARN, ROLLOUT_ID, World, target, world

ROOT = Path(__file__).resolve().parents[2]
OTHER_ARN = ARN.rsplit("/", 1)[0] + "/00000000-1111-2222-3333-444444444444"
SETTINGS = InstallSettings(inventory_table="inventory", rollout_table="rollouts", install_document="CertInstall",
                           installer_layer_arn="arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1",
                           command_timeout_seconds=300, probe_timeout_seconds=2.5)
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/staged/x/rollout-1-AbCdEf"
NODE_A, NODE_B = "mi-0123456789abcdef0", "i-0fedcba9876543210"


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1", instanceId=NODE_A))
    return fakes


def send(w: World, action: str = "install", target_id: str = "web-1", certificate_arn: str = ARN):
    return send_target_command(action, certificate_arn, target_id, ROLLOUT_ID, "0a:bc", SECRET_ARN, "v-1",  # type: ignore[arg-type]
                               settings=SETTINGS, inventory=w.inventory, commands=w.commands,
                               waiting_tasks=w.waiting_tasks, probe=w.probe, installer=w.installer,
                               task_token="token-1")


def sent_to(w: World) -> list[str]:
    return [args["instance_id"] for op, args in w.commands.calls if op == "send"]


def test_the_command_goes_to_the_node_of_the_certificates_inventory_item(w: World) -> None:
    assert send(w).instanceId == NODE_A
    assert sent_to(w) == [NODE_A]


def test_an_item_of_another_certificate_is_target_not_in_rollout_and_nothing_is_sent(w: World) -> None:
    # The item read under (ARN, web-1) names another certificate (a corrupted or forged item):
    # nothing is probed, remembered or sent.
    foreign = target("web-1", instanceId=NODE_B).model_dump(mode="json", exclude_none=True)
    w.inventory.items[(ARN, "web-1")] = {**foreign, "certificateArn": OTHER_ARN}
    with pytest.raises(TargetNotInRollout, match="web-1 of " + OTHER_ARN):
        send(w)
    assert w.commands.calls == [] and w.probe.calls == [] and w.waiting_tasks.records == {}


def test_an_item_of_another_target_is_target_not_in_rollout(w: World) -> None:
    w.inventory.items[(ARN, "web-2")] = target("web-1", instanceId=NODE_B).model_dump(mode="json", exclude_none=True)
    with pytest.raises(TargetNotInRollout):
        send(w, target_id="web-2")
    assert sent_to(w) == []


def test_a_rollback_goes_to_the_node_the_install_went_to(w: World) -> None:
    send(w)
    send(w, "rollback")
    assert sent_to(w) == [NODE_A, NODE_A]


def test_a_rollback_after_the_items_node_changed_is_target_not_in_rollout(w: World) -> None:
    send(w)
    w.inventory.add(target("web-1", instanceId=NODE_B))  # the operator moved the target mid-rollout
    with pytest.raises(TargetNotInRollout, match=f"installed on {NODE_A}.*names {NODE_B}"):
        send(w, "rollback")
    assert sent_to(w) == [NODE_A]


def test_a_rollback_without_an_install_record_goes_to_the_items_node(w: World) -> None:
    # The record expired or the install never reached SendCommand: the inventory item decides.
    send(w, "rollback")
    assert sent_to(w) == [NODE_A]
    assert w.waiting_tasks.find(waiting_task_key(ROLLOUT_ID, "web-1", "install")) is None


def test_target_not_in_rollout_fails_only_that_target_with_its_own_reason() -> None:
    # The Map's per-item Catch (States.ALL -> RecordTargetOutcome) hands the error to classify.
    state = IterationState.model_validate({
        "targetId": "web-1", "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "expectedSerial": "0a:bc",
        "secretArn": SECRET_ARN, "secretVersionId": "v1", "taskTimeoutSeconds": 1260,
        "trustAnchor": "-----BEGIN CERTIFICATE-----\n", "error": {"Error": "TargetNotInRollout", "Cause": json.dumps({"errorType": "TargetNotInRollout",
                                                                     "errorMessage": "no command sent"})}})
    assert classify(state)[:2] == (TargetOutcome.FAILED, "target-not-in-rollout")


# --------------------------------------------------------------------------- IAM


def send_command_statements() -> list[dict[str, Any]]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    # InstallTargetFunction's own role (template.yaml "probing roles")
    policies = template["Resources"]["InstallTargetFunctionRole"]["Properties"]["Policies"]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]
            if "ssm:SendCommand" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]


def test_send_command_is_split_into_the_document_and_the_nodes() -> None:
    by_sid = {s.get("Sid"): s for s in send_command_statements()}
    assert set(by_sid) == {"SendOnlyTheInstallDocument", "SendToManagedNodes"}
    document = by_sid["SendOnlyTheInstallDocument"]
    assert document["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                                               "document/${InstallBundleDocument}"}
    assert "Condition" not in document  # a node tag condition would never match the document
    nodes = by_sid["SendToManagedNodes"]
    assert nodes["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:managed-instance/*"}]
    assert all("document" not in json.dumps(r) for r in nodes["Resource"])


def test_target_node_tag_narrows_the_nodes_by_ssm_resource_tag_when_set() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    assert template["Parameters"]["TargetNodeTag"]["Default"] == ""
    assert template["Conditions"]["HasTargetNodeTag"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "TargetNodeTag"}, ""]}]}
    nodes = next(s for s in send_command_statements() if s.get("Sid") == "SendToManagedNodes")
    condition, when_set, when_empty = nodes["Condition"]["Fn::If"]
    assert condition == "HasTargetNodeTag"
    assert when_set == {"StringEquals": {f"ssm:resourceTag/{MANAGED_TAG_KEY}": {"Ref": "TargetNodeTag"}}}
    assert when_empty == {"Ref": "AWS::NoValue"}
