"""CommandCallback: SSM status change -> the waiting task gets the classified final status."""

import json
from typing import Any

import pytest
from rollout_core.contracts import CommandResult
from rollout_core.logic import callback, commands, waiting

KEY = waiting.waiting_task_key("rollout-1", "web-1", "install")
COMMENT = f"{waiting.COMMENT_PREFIX}{KEY} install web-1"


def _event(status: str) -> callback.CommandEvent:
    return callback.CommandEvent.model_validate(
        {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
         "detail": {"command-id": "c-1", "instance-id": "mi-0123456789abcdef0", "document-name": "doc",
                    "status": status}})


class FakeSfn:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task_success(self, taskToken: str, output: str) -> None:  # noqa: N803 (boto3 names)
        self.sent.append({"token": taskToken, "output": json.loads(output)})


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"sfn": FakeSfn(), "records": {}, "invocation": {}}
    monkeypatch.setattr(callback.ssm, "get_invocation", lambda c, i: state["invocation"])
    monkeypatch.setattr(commands.ssm, "get_invocation", lambda c, i: state["invocation"])
    monkeypatch.setattr(callback.dynamo, "list_rollout_records", lambda t, pk: state["records"].get(pk, []))
    monkeypatch.setattr(callback, "client", lambda service: state["sfn"])
    return state


def test_key_round_trips_through_the_command_comment():
    assert len(COMMENT) <= 100
    assert waiting.waiting_task_key_from_comment(COMMENT) == KEY
    assert waiting.waiting_task_key_from_comment("someone else's command") is None
    assert waiting.waiting_task_key_from_comment(f"{waiting.COMMENT_PREFIX}not-a-key install web-1") is None


def test_commands_and_callback_share_the_waiting_module_without_a_cycle():
    # logic.callback imports logic.commands; logic.commands must not import logic.callback.
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(commands))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "rollout_core.logic.callback" not in imported
    assert "rollout_core.logic.waiting" in imported


def test_success_completes_the_waiting_task_with_endpoint_and_served_serial(wired):
    wired["invocation"] = {"Status": "Success", "StatusDetails": "Success", "ResponseCode": 0,
                           "Comment": COMMENT}
    wired["records"][f"waiting#{KEY}"] = [{"taskToken": "tok", "context": json.dumps(
        {"endpoint": "h:443", "servedSerialBefore": "01:02", "action": "install"})}]
    assert callback.complete_waiting_task(_event("Success"), table="t").state == "SUCCEEDED"
    [sent] = wired["sfn"].sent
    assert sent["token"] == "tok"
    # The task's result is a CommandResult ($.installCommand), every field of it present.
    result = CommandResult.model_validate(sent["output"])
    assert set(sent["output"]) == set(CommandResult.model_fields)
    assert (result.state, result.endpoint, result.servedSerialBefore) == ("SUCCEEDED", "h:443", "01:02")
    assert (result.commandId, result.instanceId, result.action) == ("c-1", "mi-0123456789abcdef0", "install")


def test_failed_install_reports_the_installers_stage_and_server_text(wired):
    out = 'ROLLOUT_RESULT {"status": "failed", "stage": "reload", "error": "reload failed", "serverOutput": "bind() failed"}\n'
    wired["invocation"] = {"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 11,
                           "StandardOutputContent": out, "Comment": COMMENT}
    wired["records"][f"waiting#{KEY}"] = [{"taskToken": "tok", "context": "{}"}]
    callback.complete_waiting_task(_event("Failed"), table="t")
    output = wired["sfn"].sent[0]["output"]
    assert (output["state"], output["reason"], output["restored"]) == ("FAILED", "install-failed", True)
    assert "bind() failed" in output["detail"]


def test_delivery_timeout_is_timed_out_not_failed(wired):
    wired["invocation"] = {"Status": "TimedOut", "StatusDetails": "DeliveryTimedOut", "ResponseCode": -1,
                           "Comment": COMMENT}
    wired["records"][f"waiting#{KEY}"] = [{"taskToken": "tok", "context": "{}"}]
    callback.complete_waiting_task(_event("TimedOut"), table="t")
    assert wired["sfn"].sent[0]["output"]["reason"] == "command-timed-out"


def test_non_terminal_status_is_ignored(wired):
    assert callback.complete_waiting_task(_event("InProgress"), table="t").ignored
    assert wired["sfn"].sent == []


def test_missing_waiting_record_raises_for_an_async_retry(wired):
    wired["invocation"] = {"Status": "Success", "Comment": COMMENT}
    with pytest.raises(callback.WaitingTaskNotFound):
        callback.complete_waiting_task(_event("Success"), table="t")
