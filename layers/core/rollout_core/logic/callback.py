"""CommandCallback: SSM tells EventBridge when a command invocation changes status; this step
hands the final status back to the waiting Map iteration (Step Functions task token).

No Lambda sleeps and nothing polls SSM: the install task waits on its token (bounded by the
task's TimeoutSecondsPath, $.taskTimeoutSeconds), SSM enforces the command's own deadlines (delivery TimeoutSeconds,
the document's executionTimeout) and reports them as terminal statuses, which arrive here.
Source of the event shape: AWS Systems Manager User Guide, "Monitoring Systems Manager status
changes using Amazon EventBridge" (detail-type "EC2 Command Invocation Status-change
Notification", detail command-id, instance-id, document-name, status).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rollout_core import ports
from rollout_core.adapters.errors import AwsError, AwsPermanentError
from rollout_core.contracts import CommandCallbackResult, CommandResult, ReconcileInput, WaitingTaskContext
from rollout_core.logic.commands import command_status
from rollout_core.logic.verify_node import with_node_served_before
from rollout_core.logic.waiting import waiting_task_key, waiting_task_key_from_comment
from rollout_core.observability import logger

TERMINAL_EVENT_STATUSES = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated",
                           "DeliveryTimedOut", "ExecutionTimedOut"}


class CommandEventDetail(BaseModel):
    """The ``detail`` of SSM's status-change event (the fields this step reads)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    command_id: str = Field(alias="command-id")
    instance_id: str = Field(alias="instance-id")
    document_name: str = Field(default="", alias="document-name")
    status: str


class CommandEvent(BaseModel):
    """EventBridge's "EC2 Command Invocation Status-change Notification" from aws.ssm, as the
    CommandCallback function receives it (events/command_callback.json)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: CommandEventDetail


class WaitingTaskNotFound(Exception):
    """A status change of one of our commands whose waiting task is not recorded (yet): raised
    so that Lambda's asynchronous invocation retries it."""


def complete_waiting_task(event: CommandEvent, *, commands: ports.Commands, waiting_tasks: ports.WaitingTasks,
                          callbacks: ports.TaskCallbacks) -> CommandCallbackResult:
    """Hand a terminal command status to the waiting task: SendTaskSuccess with the
    CommandResult (status, the stored context, command and instance ids). Returns which
    command completed which state, or why the event was ignored.

    Non-terminal statuses and commands this stack did not send are ignored. A task that has
    already timed out (TaskTimedOut / InvalidToken) is logged, not retried.
    Ports: ``commands`` (GetCommandInvocation), ``waiting_tasks`` (the token recorded by
    logic/commands.py send_target_command), ``callbacks`` (SendTaskSuccess).
    Raises WaitingTaskNotFound, or a named AwsError for DynamoDB / SSM / Step Functions failures
    (both retried by Lambda's asynchronous invocation).
    """
    detail = event.detail
    if detail.status not in TERMINAL_EVENT_STATUSES:
        return CommandCallbackResult(ignored=f"status {detail.status} is not terminal")
    try:
        invocation: dict[str, Any] | None = commands.invocation(detail.command_id, detail.instance_id)
    except ports.InvocationNotFound:
        invocation = None
    except AwsPermanentError as e:
        if e.code != "InvalidCommandId":
            raise
        logger.info("status change of a command SSM does not know", extra={"command_id": detail.command_id})
        return CommandCallbackResult(ignored="unknown command")
    comment = (invocation or {}).get("Comment") or ""
    key = waiting_task_key_from_comment(comment)
    if key is None:
        logger.info("status change of a command this stack did not send", extra={"command_id": detail.command_id})
        return CommandCallbackResult(ignored="unknown command")
    task = waiting_tasks.find(key)
    if task is None:
        raise WaitingTaskNotFound(f"no waiting task recorded for command {detail.command_id}")
    context = WaitingTaskContext.model_validate(task.context)
    status = command_status(detail.command_id, detail.instance_id, event_status=detail.status,
                            invocation=invocation, commands=commands, action=context.action or "install")
    output = with_node_served_before(CommandResult(**context.model_dump(), **status.model_dump(),
                                                   commandId=detail.command_id, instanceId=detail.instance_id))
    if not callbacks.succeed(task.task_token, output.model_dump(mode="json")):
        logger.warning("the waiting task is gone (timed out or already completed)",
                       extra={"command_id": detail.command_id})
        return CommandCallbackResult(ignored="task no longer waiting")
    logger.info("command finished", extra={"command_id": detail.command_id, "instance_id": detail.instance_id,
                                           "state": status.state})
    return CommandCallbackResult(commandId=detail.command_id, state=status.state)


def reconcile_timed_out_task(request: ReconcileInput, *, commands: ports.Commands,
                             waiting_tasks: ports.WaitingTasks) -> CommandResult:
    """ReconcileInstall / ReconcileRollback: the waiting task timed out (States.Timeout) without
    SSM's status event (EventBridge delivers them best effort); ask SSM for the real status.

    Finds the command through the waiting-task record (logic.waiting.waiting_task_key of the
    rollout, target and action; logic.commands.send_target_command attached the command's ids)
    and classifies GetCommandInvocation exactly as complete_waiting_task does, so the result is
    the CommandResult the status event would have produced. A command still Pending / InProgress
    at the task's deadline is cancelled (CancelCommand: it must not go on changing files while
    the iteration restores them) and reported TIMED_OUT/command-timed-out, with filesChanged "no"
    when it never started, "unknown" when it was running. Without a record, a command id or an
    invocation the result is TIMED_OUT with filesChanged "unknown" (the rollback is attempted).
    Ports: ``waiting_tasks`` (find), ``commands`` (GetCommandInvocation, CancelCommand).
    Raises a named AwsError when DynamoDB or GetCommandInvocation fails (the ASL retries it,
    then InstallStatusUnknown / RollbackStatusUnknown).
    """
    action = request.reconcile
    task = waiting_tasks.find(waiting_task_key(request.rolloutId, request.targetId, action))
    if task is None or not task.command_id or not task.instance_id:
        logger.warning("timed-out task has no recorded command", extra={"target_id": request.targetId,
                                                                         "action": action})
        return CommandResult(state="TIMED_OUT", reason="command-timed-out", filesChanged="unknown", action=action,
                             detail="no final command status within the task's deadline, and no command id "
                                    "recorded for it")
    known = WaitingTaskContext.model_validate(task.context).model_dump() | {
        "commandId": task.command_id, "instanceId": task.instance_id}
    try:
        invocation = commands.invocation(task.command_id, task.instance_id)
    except ports.InvocationNotFound:
        return CommandResult.model_validate(known | {
            "state": "TIMED_OUT", "reason": "command-timed-out", "filesChanged": "unknown",
            "detail": f"no final status within the task's deadline; SSM has no invocation of "
                      f"{task.command_id} on {task.instance_id}"})
    status = command_status(task.command_id, task.instance_id, invocation=invocation, action=action)
    logger.info("timed-out task reconciled from GetCommandInvocation",
                extra={"command_id": task.command_id, "state": status.state, "target_id": request.targetId})
    if status.state != "PENDING":
        return with_node_served_before(CommandResult.model_validate(known | status.model_dump()))
    running = str(invocation.get("StatusDetails") or invocation.get("Status") or "Pending")
    try:
        commands.cancel(task.command_id, task.instance_id)
        cancel_note = "cancelled"
    except AwsError as e:
        logger.warning("cannot cancel the timed-out command", extra={"command_id": task.command_id, "error": str(e)})
        cancel_note = f"cancel failed: {e}"[:200]
    return CommandResult.model_validate(known | {
        "state": "TIMED_OUT", "reason": "command-timed-out", "filesChanged": status.filesChanged,
        "detail": f"still {running} on {task.instance_id} at the task's deadline; {cancel_note}"})
