"""The waiting install/rollback task, shared by the step that sends the command
(logic.commands) and the step that completes the task (logic.callback).

The InstallTarget function stores the task token under a short key before it sends the
command; the key rides in the command's Comment, so CommandCallback, on SSM's status-change
event, reads the Comment back (GetCommandInvocation), finds the token and completes the task.
"""

from __future__ import annotations

import hashlib
import re
import time

from pydantic import BaseModel

from rollout_core.adapters import dynamo
from rollout_core.contracts import WaitingTaskContext

COMMENT_PREFIX = "cert-rollout "
_KEY = re.compile(r"[0-9a-f]{32}")


class WaitingTaskRecord(BaseModel):
    """The RolloutTable item of one waiting task (other attributes of the item are ignored)."""

    taskToken: str
    context: str = "{}"  # WaitingTaskContext as JSON

    def waiting_context(self) -> WaitingTaskContext:
        """The stored context. Raises pydantic.ValidationError when it is not a WaitingTaskContext."""
        return WaitingTaskContext.model_validate_json(self.context)


def waiting_task_key(rollout_id: str, target_id: str, action: str) -> str:
    """A short id of one (rollout, target, action): 32 hex digits, so that it fits the SSM
    command's Comment (at most 100 characters) with the prefix, action and target id."""
    return hashlib.sha256(f"{rollout_id}|{target_id}|{action}".encode()).hexdigest()[:32]


def waiting_task_key_from_comment(comment: str) -> str | None:
    """The key of a Comment ``"cert-rollout <key> <action> <target id>"`` (logic.commands), or None for a command someone else sent."""
    if not comment.startswith(COMMENT_PREFIX):
        return None
    key = comment[len(COMMENT_PREFIX):].split(" ", 1)[0]
    return key if _KEY.fullmatch(key) else None


def wait_record_key(key: str) -> dict[str, str]:
    """RolloutTable key of a waiting-task record."""
    return {"rolloutId": f"waiting#{key}", "targetId": "-"}


def remember_waiting_task(table: str, key: str, task_token: str, context: WaitingTaskContext,
                          ttl_seconds: int) -> None:
    """Store the task token (a capability to complete one Map iteration's task, not key
    material) with what the callback returns besides the status (endpoint, served serial).
    Raises a named AwsError when DynamoDB fails."""
    dynamo.put_rollout_record(table, {**wait_record_key(key), "taskToken": task_token,
                                      "context": context.model_dump_json(), "expiresAt": int(time.time()) + ttl_seconds})
