"""InstallOnTarget / RollbackTarget (logic/commands.py send_target_command) and the status
callback (logic/callback.py) on the fakes: the token is stored before the command is sent,
the command carries references and settings only, and the callback hands the classified
final status to exactly that task."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from rollout_core.logic.callback import CommandEvent, complete_waiting_task
from rollout_core.logic.commands import send_target_command
from rollout_core.logic.waiting import COMMENT_PREFIX, waiting_task_key
from rollout_core.ports import NodeNotManaged, TargetNotFound
from rollout_core.probe import format_serial_hex
from rollout_core.settings import InstallSettings

from tests.fakes import recorded_text
from tests.fakes.world import ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import pki

SETTINGS = InstallSettings(inventory_table="inventory", rollout_table="rollouts", install_document="CertInstall",
                           installer_layer_arn="arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1",
                           command_timeout_seconds=300, probe_timeout_seconds=2.5)
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:acm-cert-rollout/6f1e2d3c-AbCdEf"
OLD = pki("RSA_2048", label="old").leaf_cert


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1"))
    return fakes


def send(w: World, action: str = "install", target_id: str = "web-1", token: str | None = "token-1"):
    return send_target_command(action, ARN, target_id, ROLLOUT_ID, w.certificates.serial(ARN), SECRET_ARN, "v-1",
                               settings=SETTINGS, inventory=w.inventory, commands=w.commands,
                               waiting_tasks=w.waiting_tasks, probe=w.probe, installer=w.installer,
                               task_token=token)


def sent_parameters(w: World) -> dict[str, Any]:
    [(op, args)] = [c for c in w.commands.calls if c[0] == "send"]
    return dict(args)


def test_install_sends_references_and_the_targets_settings(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, OLD)
    ref = send(w)
    call = sent_parameters(w)
    assert (call["document"], call["instance_id"], call["timeout_seconds"]) == ("CertInstall", "mi-0123456789abcdef0",
                                                                                300)
    params = call["parameters"]
    assert params["Action"] == "install" and params["ExpectedSerial"] == w.certificates.serial(ARN)
    assert (params["SecretArn"], params["SecretVersionId"], params["ExecutionTimeout"]) == (SECRET_ARN, "v-1", "300")
    assert json.loads(base64.b64decode(params["TargetConfig"])) == target("web-1").install_settings()
    assert ref.commandId == "cmd-0001" and ref.endpoint == "127.0.0.1:8443"
    assert ref.servedSerialBefore == format_serial_hex(OLD.serial_number)
    [probe_call] = w.probe.calls
    assert probe_call[1] == {"host": "127.0.0.1", "port": 8443, "sni": "web.internal.example", "timeout": 2.5}


def test_the_waiting_task_is_remembered_before_the_command_is_sent(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    key = waiting_task_key(ROLLOUT_ID, "web-1", "install")
    real_send = w.commands.send

    def send_after_remember(*args: Any, **kwargs: Any) -> str:
        assert w.waiting_tasks.find(key) is not None, "SendCommand before the task token was stored"
        return real_send(*args, **kwargs)

    monkeypatch.setattr(w.commands, "send", send_after_remember)
    send(w)
    comment = sent_parameters(w)["comment"]
    assert comment.startswith(f"{COMMENT_PREFIX}{key} install web-1") and len(comment) <= 100
    record = w.waiting_tasks.records[key]
    assert record["taskToken"] == "token-1" and record["ttlSeconds"] == 300 + 86400


def test_unreachable_target_before_install_is_no_error(w: World) -> None:
    ref = send(w)  # nothing scripted on 127.0.0.1:8443: connection refused
    assert ref.servedSerialBefore is None
    assert json.loads(w.waiting_tasks.records[waiting_task_key(ROLLOUT_ID, "web-1", "install")]["context"]) == {
        "endpoint": "127.0.0.1:8443", "servedSerialBefore": None, "action": "install", "probeNode": None}


def test_rollback_does_not_probe(w: World) -> None:
    send(w, "rollback")
    assert w.probe.calls == []
    assert sent_parameters(w)["parameters"]["Action"] == "rollback"


def test_without_a_task_token_nothing_is_remembered(w: World) -> None:
    send(w, token=None)
    assert w.waiting_tasks.calls == [] and w.commands.operations() == ["send"]


def test_a_node_ssm_does_not_manage_is_node_not_managed(w: World) -> None:
    w.commands.unmanaged.add("mi-0123456789abcdef0")
    with pytest.raises(NodeNotManaged):
        send(w)


def test_a_target_removed_from_the_inventory_is_target_not_found(w: World) -> None:
    with pytest.raises(TargetNotFound, match="web-9"):
        send(w, target_id="web-9")
    assert w.commands.calls == []


def test_command_parameters_and_records_hold_no_key_material(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, OLD)
    send(w)
    text = recorded_text(w.commands, w.waiting_tasks, w.inventory, w.probe)
    assert "PRIVATE KEY" not in text and "BEGIN" not in text


def test_send_then_status_change_completes_the_waiting_task(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, OLD)
    ref = send(w)
    w.commands.finish(ref.commandId, "Success")
    event = {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
             "detail": {"command-id": ref.commandId, "instance-id": ref.instanceId, "status": "Success"}}
    answer = complete_waiting_task(CommandEvent.model_validate(event), commands=w.commands, waiting_tasks=w.waiting_tasks, callbacks=w.callbacks)
    assert answer.model_dump(exclude_none=True) == {"commandId": ref.commandId, "state": "SUCCEEDED"}
    [(token, output)] = w.callbacks.succeeded
    assert token == "token-1"
    assert output == {"endpoint": "127.0.0.1:8443", "servedSerialBefore": format_serial_hex(OLD.serial_number),
                      "action": "install", "probeNode": None, "state": "SUCCEEDED", "reason": None, "detail": None, "stage": None, "filesChanged": "yes",
                      "served": None,
                      "commandId": ref.commandId, "instanceId": "mi-0123456789abcdef0"}


def test_install_output_with_a_key_block_is_redacted_before_the_callback(w: World) -> None:
    ref = send(w)
    leaked = pki().plain_key_pem()
    w.commands.finish(ref.commandId, "Failed", response_code=1, stderr=f"nginx: [emerg] bad key\n{leaked}")
    event = {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
             "detail": {"command-id": ref.commandId, "instance-id": ref.instanceId, "status": "Failed"}}
    complete_waiting_task(CommandEvent.model_validate(event), commands=w.commands, waiting_tasks=w.waiting_tasks, callbacks=w.callbacks)
    output = w.callbacks.succeeded[0][1]
    assert output["state"] == "FAILED" and "[redacted private key]" in output["detail"]
    assert "PRIVATE KEY" not in recorded_text(w.callbacks) and leaked.splitlines()[1] not in recorded_text(w.callbacks)
