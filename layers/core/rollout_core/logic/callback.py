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
from rollout_core.adapters.errors import AwsPermanentError
from rollout_core.contracts import CommandCallbackResult, CommandResult, WaitingTaskContext
from rollout_core.logic.commands import command_status
from rollout_core.logic.waiting import waiting_task_key_from_comment
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
    status = command_status(detail.command_id, detail.instance_id, event_status=detail.status,
                            invocation=invocation, commands=commands)
    context = WaitingTaskContext.model_validate(task.context)
    output = CommandResult(**context.model_dump(), **status.model_dump(),
                           commandId=detail.command_id, instanceId=detail.instance_id)
    if not callbacks.succeed(task.task_token, output.model_dump(mode="json")):
        logger.warning("the waiting task is gone (timed out or already completed)",
                       extra={"command_id": detail.command_id})
        return CommandCallbackResult(ignored="task no longer waiting")
    logger.info("command finished", extra={"command_id": detail.command_id, "instance_id": detail.instance_id,
                                           "state": status.state})
    return CommandCallbackResult(commandId=detail.command_id, state=status.state)
