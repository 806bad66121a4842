"""CommandCallback: SSM tells EventBridge when a command invocation changes status; this step
hands the final status back to the waiting Map iteration (Step Functions task token).

No Lambda sleeps and nothing polls SSM: the install task waits on its token (bounded by the
task's TimeoutSeconds), SSM enforces the command's own deadlines (delivery TimeoutSeconds,
the document's executionTimeout) and reports them as terminal statuses, which arrive here.
Source of the event shape: AWS Systems Manager User Guide, "Monitoring Systems Manager status
changes using Amazon EventBridge" (detail-type "EC2 Command Invocation Status-change
Notification", detail command-id, instance-id, document-name, status).
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from rollout_core.adapters import dynamo, ssm
from rollout_core.adapters.aws import client
from rollout_core.adapters.errors import AwsPermanentError, named_aws_error
from rollout_core.logic.commands import command_status, waiting_task_key_from_comment
from rollout_core.observability import logger

TERMINAL_EVENT_STATUSES = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated",
                           "DeliveryTimedOut", "ExecutionTimedOut"}


class CommandEventDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    command_id: str = Field(alias="command-id")
    instance_id: str = Field(alias="instance-id")
    document_name: str = Field(default="", alias="document-name")
    status: str


class CommandEvent(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    source: str
    detail_type: str = Field(alias="detail-type")
    detail: CommandEventDetail


class WaitingTaskNotFound(Exception):
    """A status change of one of our commands whose waiting task is not recorded (yet): raised
    so that Lambda's asynchronous invocation retries it."""


def wait_record_key(key: str) -> dict[str, str]:
    """RolloutTable key of a waiting-task record."""
    return {"rolloutId": f"waiting#{key}", "targetId": "-"}


def remember_waiting_task(table: str, key: str, task_token: str, context: dict[str, Any], ttl_seconds: int) -> None:
    """Store the task token (a capability to complete one Map iteration's task, not key
    material) with what the callback returns besides the status (endpoint, served serial)."""
    dynamo.put_rollout_record(table, {**wait_record_key(key), "taskToken": task_token,
                                      "context": json.dumps(context), "expiresAt": int(time.time()) + ttl_seconds})


def complete_waiting_task(event: dict[str, Any], *, table: str) -> dict[str, Any]:
    """Hand a terminal command status to the waiting task. Returns a small summary.

    Non-terminal statuses and commands this stack did not send are ignored. A task that has
    already timed out (TaskTimedOut / InvalidToken) is logged, not retried.
    Raises a named AwsError for DynamoDB / SSM / Step Functions failures (retried by Lambda's
    asynchronous invocation).
    """
    parsed = CommandEvent.model_validate(event)
    detail = parsed.detail
    if detail.status not in TERMINAL_EVENT_STATUSES:
        return {"ignored": f"status {detail.status} is not terminal"}
    try:
        invocation: dict[str, Any] | None = ssm.get_invocation(detail.command_id, detail.instance_id)
    except ssm.InvocationNotFound:
        invocation = None
    except AwsPermanentError as e:
        if e.code != "InvalidCommandId":
            raise
        logger.info("status change of a command SSM does not know", extra={"command_id": detail.command_id})
        return {"ignored": "unknown command"}
    comment = (invocation or {}).get("Comment") or ""
    key = waiting_task_key_from_comment(comment)
    if key is None:
        logger.info("status change of a command this stack did not send", extra={"command_id": detail.command_id})
        return {"ignored": "unknown command"}
    records = [r for r in dynamo.list_rollout_records(table, f"waiting#{key}")]
    if not records:
        raise WaitingTaskNotFound(f"no waiting task recorded for command {detail.command_id}")
    record = records[0]
    status = command_status(detail.command_id, detail.instance_id, event_status=detail.status,
                            invocation=invocation)
    output = {**json.loads(record.get("context") or "{}"), **status.model_dump(mode="json"),
              "commandId": detail.command_id, "instanceId": detail.instance_id}
    sfn = client("stepfunctions")
    try:
        sfn.send_task_success(taskToken=record["taskToken"], output=json.dumps(output))
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            logger.warning("the waiting task is gone (timed out or already completed)",
                           extra={"command_id": detail.command_id})
            return {"ignored": "task no longer waiting"}
        raise named_aws_error(e, "SendTaskSuccess") from None
    except BotoCoreError as e:
        raise named_aws_error(e, "SendTaskSuccess") from None
    logger.info("command finished", extra={"command_id": detail.command_id, "instance_id": detail.instance_id,
                                           "state": status.state})
    return {"commandId": detail.command_id, "state": status.state}
