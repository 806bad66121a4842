"""CommandCallback: SSM status change -> the waiting task gets the classified final status
(logic/callback.py with the fakes of tests/fakes)."""

from typing import Any

import pytest
from rollout_core.adapters.errors import AwsPermanentError
from rollout_core.logic import callback, waiting

from tests.fakes import FakeCallbacks, FakeCommands, FakeWaitingTasks

KEY = waiting.waiting_task_key("rollout-1", "web-1", "install")
COMMENT = f"{waiting.COMMENT_PREFIX}{KEY} install web-1"


def _event(status: str, command_id: str = "cmd-0001") -> callback.CommandEvent:
    return callback.CommandEvent.model_validate(_raw_event(status, command_id))


def _raw_event(status: str, command_id: str = "cmd-0001") -> dict[str, Any]:
    return {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
            "detail": {"command-id": command_id, "instance-id": "mi-0123456789abcdef0", "document-name": "doc",
                       "status": status}}


class Wired:
    def __init__(self) -> None:
        self.commands, self.waiting, self.callbacks = FakeCommands(), FakeWaitingTasks(), FakeCallbacks()
        self.command_id = self.commands.send("doc", "mi-0123456789abcdef0", {}, timeout_seconds=600, comment=COMMENT)

    def complete(self, status: str) -> dict[str, Any]:
        result = callback.complete_waiting_task(_event(status, self.command_id),
                                                commands=self.commands, waiting_tasks=self.waiting,
                                                callbacks=self.callbacks)
        return result.model_dump(mode="json", exclude_none=True)


@pytest.fixture
def wired() -> Wired:
    return Wired()


def test_key_round_trips_through_the_command_comment():
    assert len(COMMENT) <= 100
    assert waiting.waiting_task_key_from_comment(COMMENT) == KEY
    assert waiting.waiting_task_key_from_comment("someone else's command") is None


def test_success_completes_the_waiting_task_with_endpoint_and_served_serial(wired: Wired):
    wired.commands.finish(wired.command_id, "Success")
    wired.waiting.remember(KEY, "tok", {"endpoint": "h:443", "servedSerialBefore": "01:02", "action": "install"},
                           ttl_seconds=60)
    assert wired.complete("Success")["state"] == "SUCCEEDED"
    [(token, output)] = wired.callbacks.succeeded
    assert token == "tok"
    assert output["state"] == "SUCCEEDED" and output["endpoint"] == "h:443"
    assert (output["commandId"], output["instanceId"]) == (wired.command_id, "mi-0123456789abcdef0")


def test_failed_install_reports_the_installers_stage_and_server_text(wired: Wired):
    out = 'ROLLOUT_RESULT {"status": "failed", "stage": "reload", "error": "reload failed", "serverOutput": "bind() failed"}\n'
    wired.commands.finish(wired.command_id, "Failed", response_code=11, stdout=out)
    wired.waiting.remember(KEY, "tok", {}, ttl_seconds=60)
    wired.complete("Failed")
    output = wired.callbacks.succeeded[0][1]
    assert (output["state"], output["reason"], output["stage"], output["filesChanged"]) == (
        "FAILED", "install-failed", "reload", "restored")
    assert "bind() failed" in output["detail"]


def test_delivery_timeout_is_timed_out_not_failed(wired: Wired):
    wired.commands.finish(wired.command_id, "TimedOut", status_details="DeliveryTimedOut", response_code=-1)
    wired.waiting.remember(KEY, "tok", {}, ttl_seconds=60)
    wired.complete("TimedOut")
    assert wired.callbacks.succeeded[0][1]["reason"] == "command-timed-out"


def test_status_change_whose_invocation_cannot_be_read_is_ignored(wired: Wired):
    wired.waiting.remember(KEY, "tok", {}, ttl_seconds=60)
    # no invocation scripted: InvocationDoesNotExist, so no Comment names the waiting task
    assert wired.complete("Undeliverable") == {"ignored": "unknown command"}
    assert wired.callbacks.calls == []


def test_non_terminal_status_is_ignored(wired: Wired):
    assert "ignored" in wired.complete("InProgress")
    assert wired.callbacks.calls == [] and wired.commands.operations() == ["send"]


def test_command_ssm_does_not_know_is_ignored():
    fakes = FakeCommands(), FakeWaitingTasks(), FakeCallbacks()
    answer = callback.complete_waiting_task(_event("Success", "cmd-unknown"), commands=fakes[0],
                                            waiting_tasks=fakes[1], callbacks=fakes[2])
    assert answer.model_dump(exclude_none=True) == {"ignored": "unknown command"}


def test_other_permanent_ssm_errors_are_raised(wired: Wired, monkeypatch: pytest.MonkeyPatch):
    def denied(command_id: str, instance_id: str) -> dict[str, Any]:
        raise AwsPermanentError("GetCommandInvocation", "AccessDeniedException", "no")

    monkeypatch.setattr(wired.commands, "invocation", denied)
    with pytest.raises(AwsPermanentError, match="AccessDeniedException"):
        wired.complete("Success")


def test_command_someone_else_sent_is_ignored():
    fakes = FakeCommands(), FakeWaitingTasks(), FakeCallbacks()
    command_id = fakes[0].send("doc", "mi-0123456789abcdef0", {}, timeout_seconds=60, comment="patching run")
    fakes[0].finish(command_id, "Success")
    answer = callback.complete_waiting_task(_event("Success", command_id), commands=fakes[0],
                                            waiting_tasks=fakes[1], callbacks=fakes[2])
    assert answer.model_dump(exclude_none=True) == {"ignored": "unknown command"} and fakes[2].calls == []


def test_missing_waiting_record_raises_for_an_async_retry(wired: Wired):
    wired.commands.finish(wired.command_id, "Success")
    with pytest.raises(callback.WaitingTaskNotFound):
        wired.complete("Success")


def test_task_that_no_longer_waits_is_logged_not_retried(wired: Wired):
    wired.commands.finish(wired.command_id, "Success")
    wired.waiting.remember(KEY, "tok", {}, ttl_seconds=60)
    wired.callbacks.gone.add("tok")
    assert wired.complete("Success") == {"ignored": "task no longer waiting"}


def test_commands_and_callback_share_the_waiting_module_without_a_cycle():
    # logic.callback imports logic.commands; logic.commands must not import logic.callback.
    import ast
    import inspect

    from rollout_core.logic import commands

    tree = ast.parse(inspect.getsource(commands))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "rollout_core.logic.callback" not in imported
    assert "rollout_core.logic.waiting" in imported
