"""InstallOnTarget / RollbackTarget and CheckInstall / CheckRollback: one SSM command per
target, polled by the state machine (Wait + Choice), bounded by a deadline.

Rules: D3 (InvocationDoesNotExist right after SendCommand is transient; Pending, InProgress,
Delayed are not terminal; a node that never answers ends "timed out", distinct from "command
failed"), S2 (writing files is never success: verification follows). The Map task waits on
a task token; logic.callback completes it when SSM reports a terminal status.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel

from rollout_core.adapters import dynamo, installer_source, ssm
from rollout_core.domain.command_timeouts import subprocess_timeout_seconds
from rollout_core.domain.ssm_status import CommandState, classify_invocation
from rollout_core.observability import logger
from rollout_core.probe import ProbeError, probe_served_certificate
from rollout_core.settings import InstallSettings

RESULT_LINE = re.compile(r"^ROLLOUT_RESULT (\{.*\})\s*$", re.MULTILINE)
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)


class CommandRef(BaseModel):
    commandId: str
    instanceId: str
    deadline: float  # epoch seconds after which the command counts as timed out
    pollIntervalSeconds: int
    endpoint: str
    servedSerialBefore: str | None = None


class CommandStatus(BaseModel):
    state: Literal["PENDING", "SUCCEEDED", "FAILED", "TIMED_OUT", "UNDELIVERABLE", "CANCELLED"]
    reason: str | None = None
    detail: str | None = None
    restored: bool = False


def send_target_command(action: Literal["install", "rollback"], certificate_arn: str, target_id: str,
                        rollout_id: str, expected_serial: str, secret_arn: str, secret_version_id: str, *,
                        settings: InstallSettings, task_token: str | None = None,
                        now: float | None = None) -> CommandRef:
    """Send the install (or rollback) document to the target's managed node.

    Before an install, probes what the target serves (served_serial_before; None when it
    cannot be reached). With ``task_token`` (the waiting Map task's), remembers the token
    under the command id, so the status-change callback can complete the task.
    Raises TargetNotFound, NodeNotManaged (reported as undeliverable) or a named AwsError.
    """
    target = dynamo.get_target(settings.inventory_table, certificate_arn, target_id)
    before = None
    if action == "install":
        try:
            before = probe_served_certificate(target.host, target.port, target.sni,
                                              timeout=settings.probe_timeout_seconds).serial_hex
        except ProbeError as e:
            logger.info("target not reachable before install", extra={"target_id": target_id, "error": str(e)})
    config = target.install_settings_b64()
    wait_key = waiting_task_key(rollout_id, target_id, action)
    if task_token:
        # Stored BEFORE the command is sent: a fast node's status event can never arrive first.
        from rollout_core.logic.callback import remember_waiting_task

        remember_waiting_task(settings.rollout_table, wait_key, task_token,
                              {"endpoint": target.endpoint, "servedSerialBefore": before, "action": action},
                              ttl_seconds=settings.command_timeout_seconds + 86400)
    command_id = ssm.send_command(
        settings.install_document, target.instanceId,
        document_parameters(action, secret_arn, secret_version_id, config, expected_serial, settings),
        timeout_seconds=settings.command_timeout_seconds,
        comment=f"{COMMENT_PREFIX}{wait_key} {action} {target_id}",
    )
    logger.info("command sent", extra={"action": action, "target_id": target_id, "command_id": command_id,
                                       "instance_id": target.instanceId})
    started = now if now is not None else time.time()
    return CommandRef(commandId=command_id, instanceId=target.instanceId,
                      deadline=started + settings.command_timeout_seconds,
                      pollIntervalSeconds=settings.poll_interval_seconds, endpoint=target.endpoint,
                      servedSerialBefore=before)


def document_parameters(action: str, secret_arn: str, secret_version_id: str, target_config: str,
                        expected_serial: str, settings: InstallSettings) -> dict[str, str]:
    """The install document's parameters (documents/install-bundle.ssm.yaml), name -> value.

    ExecutionTimeout is the stack's CommandTimeoutSeconds; CommandTimeout, each download and
    subprocess on the node, follows domain.command_timeouts; InstallerUrl / InstallerSha256
    name the InstallerLayer version (adapters.installer_source). Raises what
    installer_source.installer_package raises.
    """
    installer = installer_source.installer_package(settings.installer_layer_arn)
    return {"Action": action, "SecretArn": secret_arn, "SecretVersionId": secret_version_id,
            "TargetConfig": target_config, "ExpectedSerial": expected_serial,
            "ExecutionTimeout": str(settings.command_timeout_seconds),
            "CommandTimeout": str(subprocess_timeout_seconds(settings.command_timeout_seconds)),
            "InstallerUrl": installer.url, "InstallerSha256": installer.sha256}


COMMENT_PREFIX = "cert-rollout "


def waiting_task_key(rollout_id: str, target_id: str, action: str) -> str:
    """A short id of one (rollout, target, action): it rides in the SSM command's Comment (at
    most 100 characters) so the status-change callback finds the waiting task."""
    return hashlib.sha256(f"{rollout_id}|{target_id}|{action}".encode()).hexdigest()[:32]


def waiting_task_key_from_comment(comment: str) -> str | None:
    """The key written by send_target_command, or None for a command someone else sent."""
    if not comment.startswith(COMMENT_PREFIX):
        return None
    key = comment[len(COMMENT_PREFIX):].split(" ", 1)[0]
    return key if re.fullmatch(r"[0-9a-f]{32}", key) else None


def redact(text: str) -> str:
    """Remove any PEM private-key block from command output before it goes anywhere."""
    return PRIVATE_KEY_BLOCK.sub("[redacted private key]", text)


def installer_result(stdout: str) -> dict[str, Any] | None:
    """The installer's last ``ROLLOUT_RESULT {json}`` line, or None."""
    found = RESULT_LINE.findall(stdout or "")
    if not found:
        return None
    try:
        return json.loads(found[-1])
    except json.JSONDecodeError:
        return None


def command_status(command_id: str, instance_id: str, *, event_status: str | None = None,
                   invocation: dict[str, Any] | None = None) -> CommandStatus:
    """Classify one finished invocation (D3) from GetCommandInvocation, with the installer's
    ROLLOUT_RESULT for the reason and the server's error text.

    ``event_status`` is the status EventBridge reported; it is used when the invocation
    cannot be read (InvocationDoesNotExist for an undeliverable command).
    Raises a named AwsError for API failures.
    """
    try:
        invocation = invocation if invocation is not None else ssm.get_invocation(command_id, instance_id)
        state = classify_invocation(invocation.get("Status") or event_status or "Pending",
                                    invocation.get("StatusDetails"), invocation.get("ResponseCode"))
    except ssm.InvocationNotFound:
        invocation = {"StatusDetails": event_status}
        state = classify_invocation(event_status or "Pending", event_status, None)
    if state == CommandState.PENDING:
        return CommandStatus(state="PENDING")
    if state == CommandState.SUCCEEDED:
        return CommandStatus(state="SUCCEEDED")
    result = installer_result(invocation.get("StandardOutputContent", "")) or {}
    server_text = redact(str(result.get("serverOutput") or invocation.get("StandardErrorContent") or ""))[-600:]
    if state == CommandState.TIMED_OUT:
        return CommandStatus(state="TIMED_OUT", reason="command-timed-out",
                             detail=f"{invocation.get('StatusDetails') or 'TimedOut'} on {instance_id}: {server_text}".strip(" :"))
    if state == CommandState.UNDELIVERABLE:
        return CommandStatus(state="UNDELIVERABLE", reason="undeliverable",
                             detail=f"{invocation.get('StatusDetails') or 'Undeliverable'} on {instance_id}")
    if state == CommandState.CANCELLED:
        return CommandStatus(state="CANCELLED", reason="command-cancelled", detail=invocation.get("StatusDetails"))
    stage = result.get("stage")
    error = redact(str(result.get("error") or ""))
    detail = "; ".join(p for p in (f"stage {stage}" if stage else "", error, server_text) if p)[:800]
    return CommandStatus(state="FAILED", reason="install-failed", detail=detail or "command failed",
                         restored=stage in ("test", "reload"))
