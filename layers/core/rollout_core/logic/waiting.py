"""The waiting install/rollback task, shared by the step that sends the command
(logic.commands) and the step that completes the task (logic.callback).

The InstallTarget function stores the task token under a short key (ports.WaitingTasks)
before it sends the command; the key rides in the command's Comment, so CommandCallback, on SSM's status-change
event, reads the Comment back (GetCommandInvocation), finds the token and completes the task.
"""

from __future__ import annotations

import hashlib
import re

COMMENT_PREFIX = "cert-rollout "
_KEY = re.compile(r"[0-9a-f]{32}")


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
