"""A waiting task that timed out asks SSM (logic/callback.py reconcile_timed_out_task) and gets
the CommandResult the lost status event would have produced; which installer results mean the
target's files changed (logic/commands.py files_changed)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rollout_core.adapters.errors import AwsPermanentError
from rollout_core.contracts import ReconcileInput
from rollout_core.domain.ssm_status import CommandState
from rollout_core.logic import callback, waiting
from rollout_core.logic.commands import files_changed

from tests.fakes import FakeCallbacks, FakeCommands, FakeWaitingTasks

INSTANCE = "mi-0123456789abcdef0"
CONTEXT = {"endpoint": "h:443", "servedSerialBefore": "01:02", "action": "install"}


def result_line(**fields: Any) -> str:
    return "ROLLOUT_RESULT " + json.dumps({"status": "failed", **fields}) + "\n"


class Sent:
    """One install command sent for (rollout-1, web-1) with its waiting-task record."""

    def __init__(self, action: str = "install") -> None:
        self.commands, self.waiting = FakeCommands(), FakeWaitingTasks()
        self.key = waiting.waiting_task_key("rollout-1", "web-1", action)
        self.command_id = self.commands.send("doc", INSTANCE, {}, timeout_seconds=60,
                                             comment=f"{waiting.COMMENT_PREFIX}{self.key} {action} web-1")
        self.waiting.remember(self.key, "tok", {**CONTEXT, "action": action}, ttl_seconds=60)
        self.waiting.attach_command(self.key, self.command_id, INSTANCE)
        self.action = action

    def reconcile(self) -> dict[str, Any]:
        request = ReconcileInput(reconcile=self.action, targetId="web-1", rolloutId="rollout-1")  # type: ignore[arg-type]
        return callback.reconcile_timed_out_task(request, commands=self.commands,
                                                 waiting_tasks=self.waiting).model_dump(mode="json")


def test_lost_success_event_is_reconciled_as_succeeded_with_the_context() -> None:
    sent = Sent()
    sent.commands.finish(sent.command_id, "Success")
    out = sent.reconcile()
    assert (out["state"], out["filesChanged"]) == ("SUCCEEDED", "yes")
    assert (out["endpoint"], out["servedSerialBefore"], out["commandId"], out["instanceId"]) == (
        "h:443", "01:02", sent.command_id, INSTANCE)
    assert "cancel" not in sent.commands.operations()


def test_reconciled_result_is_what_the_status_event_would_have_sent() -> None:
    sent = Sent()
    sent.commands.finish(sent.command_id, "Failed", response_code=11,
                         stdout=result_line(stage="reload", error="reload failed; previous files restored"))
    reconciled = sent.reconcile()
    callbacks = FakeCallbacks()
    event = callback.CommandEvent.model_validate({
        "source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
        "detail": {"command-id": sent.command_id, "instance-id": INSTANCE, "status": "Failed"}})
    callback.complete_waiting_task(event, commands=sent.commands, waiting_tasks=sent.waiting, callbacks=callbacks)
    assert reconciled == callbacks.succeeded[0][1]
    assert (reconciled["state"], reconciled["stage"], reconciled["filesChanged"]) == ("FAILED", "reload", "restored")


@pytest.mark.parametrize(("details", "changed"), [("InProgress", "unknown"), ("Pending", "no"), ("Delayed", "no")])
def test_command_still_running_at_the_deadline_is_cancelled_and_timed_out(details: str, changed: str) -> None:
    sent = Sent()
    status = "InProgress" if details == "InProgress" else "Pending"
    sent.commands.finish(sent.command_id, status, status_details=details, response_code=-1)
    out = sent.reconcile()
    assert (out["state"], out["reason"], out["filesChanged"]) == ("TIMED_OUT", "command-timed-out", changed)
    assert f"still {details}" in out["detail"] and "cancelled" in out["detail"]
    assert sent.commands.cancelled == {sent.command_id}


def test_a_failing_cancel_is_named_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Sent()
    sent.commands.finish(sent.command_id, "InProgress", response_code=-1)

    def refuse(command_id: str, instance_id: str) -> None:
        raise AwsPermanentError("CancelCommand", "InvalidCommandId", command_id)

    monkeypatch.setattr(sent.commands, "cancel", refuse)
    out = sent.reconcile()
    assert out["state"] == "TIMED_OUT" and "cancel failed" in out["detail"]


def test_no_recorded_command_is_timed_out_with_files_unknown() -> None:
    sent = Sent()
    sent.waiting.records[sent.key].pop("commandId")
    out = sent.reconcile()
    assert (out["state"], out["filesChanged"]) == ("TIMED_OUT", "unknown")
    assert "no command id" in out["detail"]
    assert "invocation" not in sent.commands.operations()


def test_invocation_ssm_does_not_know_is_timed_out_with_files_unknown() -> None:
    sent = Sent()  # nothing scripted: InvocationDoesNotExist
    out = sent.reconcile()
    assert (out["state"], out["filesChanged"], out["commandId"]) == ("TIMED_OUT", "unknown", sent.command_id)


def test_rollback_task_is_reconciled_by_its_own_key() -> None:
    sent = Sent("rollback")
    sent.commands.finish(sent.command_id, "Success", stdout='ROLLOUT_RESULT {"status": "ok", "stage": "rollback"}\n')
    out = sent.reconcile()
    assert (out["state"], out["action"], out["filesChanged"]) == ("SUCCEEDED", "rollback", "yes")


@pytest.mark.parametrize(("action", "state", "result", "details", "expected"), [
    ("install", CommandState.FAILED, {"stage": "fetch", "error": "secret"}, "Failed", "no"),
    ("install", CommandState.FAILED, {"stage": "write", "error": "cannot stage"}, "Failed", "no"),
    ("install", CommandState.FAILED, {"stage": "write", "error": "x; restore failed: no backup"}, "Failed", "yes"),
    ("install", CommandState.FAILED, {"stage": "test", "error": "previous files restored"}, "Failed", "restored"),
    ("install", CommandState.FAILED, {"stage": "reload", "error": "x; restore failed: y"}, "Failed", "yes"),
    ("install", CommandState.FAILED, {"stage": "reload", "restored": False}, "Failed", "yes"),
    ("install", CommandState.FAILED, None, "Failed", "unknown"),  # killed before its result line
    ("install", CommandState.TIMED_OUT, None, "ExecutionTimedOut", "unknown"),
    ("install", CommandState.TIMED_OUT, None, "DeliveryTimedOut", "no"),
    ("install", CommandState.UNDELIVERABLE, None, "Undeliverable", "no"),
    ("install", CommandState.CANCELLED, None, "Canceled", "unknown"),
    ("install", CommandState.SUCCEEDED, {"status": "ok", "stage": "reload"}, "Success", "yes"),
    ("rollback", CommandState.SUCCEEDED, {"status": "ok", "stage": "rollback"}, "Success", "yes"),
    ("rollback", CommandState.SUCCEEDED, {"status": "ok", "stage": "rollback", "restored": False}, "Success", "no"),
])
def test_files_changed_follows_the_installers_stage(action: str, state: CommandState, result: dict[str, Any] | None,
                                                    details: str, expected: str) -> None:
    assert files_changed(action, state, result, details) == expected  # type: ignore[arg-type]
