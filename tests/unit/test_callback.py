"""CommandCallback: SSM status change -> the waiting task gets the classified final status."""

import json
from typing import Any

import pytest

from rollout_core.logic import callback, commands

KEY = commands.waiting_task_key("rollout-1", "web-1", "install")


def _event(status: str) -> dict[str, Any]:
    return {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
            "detail": {"command-id": "c-1", "instance-id": "mi-0123456789abcdef0", "document-name": "doc",
                       "status": status}}


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
    comment = f"{commands.COMMENT_PREFIX}{KEY} install web-1"
    assert len(comment) <= 100
    assert commands.waiting_task_key_from_comment(comment) == KEY
    assert commands.waiting_task_key_from_comment("someone else's command") is None


def test_success_completes_the_waiting_task_with_endpoint_and_served_serial(wired):
    wired["invocation"] = {"Status": "Success", "StatusDetails": "Success", "ResponseCode": 0,
                           "Comment": f"{commands.COMMENT_PREFIX}{KEY} install web-1"}
    wired["records"][f"waiting#{KEY}"] = [{"taskToken": "tok", "context": json.dumps(
        {"endpoint": "h:443", "servedSerialBefore": "01:02", "action": "install"})}]
    assert callback.complete_waiting_task(_event("Success"), table="t")["state"] == "SUCCEEDED"
    [sent] = wired["sfn"].sent
    assert sent["token"] == "tok"
    assert sent["output"]["state"] == "SUCCEEDED" and sent["output"]["endpoint"] == "h:443"


def test_failed_install_reports_the_installers_stage_and_server_text(wired):
    out = 'ROLLOUT_RESULT {"status": "failed", "stage": "reload", "error": "reload failed", "serverOutput": "bind() failed"}\n'
    wired["invocation"] = {"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 11,
                           "StandardOutputContent": out, "Comment": f"{commands.COMMENT_PREFIX}{KEY} install web-1"}
    wired["records"][f"waiting#{KEY}"] = [{"taskToken": "tok", "context": "{}"}]
    callback.complete_waiting_task(_event("Failed"), table="t")
    output = wired["sfn"].sent[0]["output"]
    assert (output["state"], output["reason"], output["restored"]) == ("FAILED", "install-failed", True)
    assert "bind() failed" in output["detail"]


def test_delivery_timeout_is_timed_out_not_failed(wired):
    wired["invocation"] = {"Status": "TimedOut", "StatusDetails": "DeliveryTimedOut", "ResponseCode": -1,
                           "Comment": f"{commands.COMMENT_PREFIX}{KEY} install web-1"}
    wired["records"][f"waiting#{KEY}"] = [{"taskToken": "tok", "context": "{}"}]
    callback.complete_waiting_task(_event("TimedOut"), table="t")
    assert wired["sfn"].sent[0]["output"]["reason"] == "command-timed-out"


def test_non_terminal_status_is_ignored(wired):
    assert "ignored" in callback.complete_waiting_task(_event("InProgress"), table="t")
    assert wired["sfn"].sent == []


def test_missing_waiting_record_raises_for_an_async_retry(wired):
    wired["invocation"] = {"Status": "Success", "Comment": f"{commands.COMMENT_PREFIX}{KEY} install web-1"}
    with pytest.raises(callback.WaitingTaskNotFound):
        callback.complete_waiting_task(_event("Success"), table="t")
