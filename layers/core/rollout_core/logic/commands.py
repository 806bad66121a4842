"""InstallOnTarget / RollbackTarget: one SSM command per target, and the classification of
its final status.

The Map task that sends the command waits on a task token (lambda:invoke.waitForTaskToken,
bounded by the task's TimeoutSecondsPath): nothing polls SSM and no Lambda sleeps. SSM ends
the command itself (delivery TimeoutSeconds, the document's execution timeout) and reports
the final status through EventBridge; logic.callback then classifies it (command_status) and
completes the task. Rules: D3 (Pending, InProgress, Delayed are not terminal; an invocation
GetCommandInvocation does not know, InvocationDoesNotExist, is classified by the event's status;
a node that never answers ends "timed out", distinct from "command failed"; an undeliverable
command is not a failed install), S2 (writing files is never success: verification follows).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rollout_core import ports
from rollout_core.contracts import Action, CommandRef, CommandStatus, FilesChanged, WaitingTaskContext
from rollout_core.domain.command_timeouts import subprocess_timeout_seconds
from rollout_core.domain.errors import RolloutError
from rollout_core.domain.key_text import redact_key_text
from rollout_core.domain.ssm_status import CommandState, classify_invocation, installer_reason
from rollout_core.logic.observe import observe
from rollout_core.logic.verify_node import parse_served
from rollout_core.logic.waiting import COMMENT_PREFIX, waiting_task_key
from rollout_core.models import Target
from rollout_core.observability import logger
from rollout_core.settings import InstallSettings


class TargetNotInRollout(RolloutError):
    """The command would go to a node that is not the target's node in the inventory of the
    rollout's certificate: the item read is not (certificate ARN, target id) of this rollout, or a
    rollback would go to another node than the install did (the item's instanceId changed during
    the rollout). Nothing is sent; only this target fails (reason target-not-in-rollout)."""


def rollout_instance_id(action: Action, target: Target, certificate_arn: str, target_id: str, rollout_id: str, *,
                        waiting_tasks: ports.WaitingTasks) -> str:
    """The one managed node a command for (``certificate_arn``, ``target_id``) may go to: the
    ``instanceId`` of the inventory item read for that certificate and target (issue 11, item 4).

    A "probe" goes to the item's ``probeNode`` instead (models.Target.probeNode).
    ``target``: the item as Inventory.get returned it; for a rollback, the install's waiting-task
    record (logic.waiting) names the node the install went to, and the rollback must go there.
    Raises TargetNotInRollout when the item belongs to another certificate or target, or the
    rollback's node differs from the install's. The IAM side (template.yaml, statement
    SendToManagedNodes) can only narrow nodes by tag (SendCommand's node resources honour
    ssm:resourceTag, service authorization reference), not by inventory: this check is that part.
    """
    if target.certificateArn != certificate_arn or target.targetId != target_id:
        raise TargetNotInRollout(f"the inventory item read for target {target_id} of {certificate_arn} is target "
                                 f"{target.targetId} of {target.certificateArn}: no command sent")
    if action == "probe":  # read-only, to the node the inventory names as the target's probe node
        if target.probeNode is None:
            raise TargetNotInRollout(f"target {target_id} names no probeNode (the inventory changed during the "
                                     "rollout?): no probe sent")
        return target.probeNode
    if action == "rollback":
        install = waiting_tasks.find(waiting_task_key(rollout_id, target_id, "install"))
        if install is not None and install.instance_id and install.instance_id != target.instanceId:
            raise TargetNotInRollout(f"target {target_id} was installed on {install.instance_id}; the inventory now "
                                     f"names {target.instanceId}: no rollback sent to a node the install did not touch")
    return target.instanceId


RESULT_LINE = re.compile(r"^ROLLOUT_RESULT (\{.*\})\s*$", re.MULTILINE)
PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S)


def send_target_command(action: Action, certificate_arn: str, target_id: str,
                        rollout_id: str, expected_serial: str, secret_arn: str, secret_version_id: str, *,
                        settings: InstallSettings, inventory: ports.Inventory, commands: ports.Commands,
                        waiting_tasks: ports.WaitingTasks, probe: ports.TlsProbe, installer: ports.InstallerSource,
                        task_token: str | None = None) -> CommandRef:
    """Send the install (or rollback) document to the target's managed node; "probe" (the
    read-only probe of a target with a probeNode, after its install succeeded) to its probe node.

    Before an install, probes what the target serves (served_serial_before; None when it
    cannot be reached), except for a verifyFrom-node target, whose node probes it itself
    (logic.verify_node.with_node_served_before). With ``task_token`` (the waiting Map task's), remembers the token
    under a key that rides in the command's Comment (logic.waiting), so that CommandCallback
    can complete the task. Returns the CommandRef (ids, endpoint, served serial before).
    Ports: ``inventory`` (the target), ``probe`` (served serial before), ``waiting_tasks``
    (the token), ``commands`` (SendCommand), ``installer`` (the installer's URL and SHA-256).
    The command goes only to rollout_instance_id (the node of the inventory item read for this
    certificate and target), checked before anything is probed or sent.
    Raises TargetNotFound, TargetNotInRollout, NodeNotManaged (reported as undeliverable) or a
    named AwsError.
    """
    target = inventory.get(certificate_arn, target_id)
    instance_id = rollout_instance_id(action, target, certificate_arn, target_id, rollout_id,
                                      waiting_tasks=waiting_tasks)
    before = None
    if action == "install" and target.verifyFrom != "node":  # a node-verified target: its node probes
        # one handshake, through the one probe path (logic.observe)
        seen = observe(probe, target.host, target.port, target.sni, timeout=settings.probe_timeout_seconds)
        before = seen.served_serial_hex
        if seen.error is not None:
            logger.info("target not reachable before install", extra={"target_id": target_id, "error": str(seen.error)})
    # a probe node gets where to probe, never the target's files or commands (models.Target.probe_settings)
    config = target.probe_settings_b64() if action == "probe" else target.install_settings_b64()
    wait_key = waiting_task_key(rollout_id, target_id, action)
    if task_token:
        # Stored BEFORE the command is sent: a fast node's status event can never arrive first.
        context = WaitingTaskContext(endpoint=target.endpoint, servedSerialBefore=before, action=action,
                                     probeNode=target.probeNode if action == "install" else None)
        waiting_tasks.remember(wait_key, task_token, context.model_dump(mode="json"),
                               ttl_seconds=settings.command_timeout_seconds + 86400)
    command_id = commands.send(
        settings.install_document, instance_id,
        document_parameters(action, secret_arn, secret_version_id, config, expected_serial, settings,
                            installer.package(settings.installer_layer_arn)),
        timeout_seconds=settings.command_timeout_seconds,
        comment=f"{COMMENT_PREFIX}{wait_key} {action} {target_id}",
    )
    if task_token:
        # A task that times out (its status event lost) finds the command through this record
        # (logic.callback.reconcile_timed_out_task): the task's own output is lost on timeout.
        waiting_tasks.attach_command(wait_key, command_id, instance_id)
    logger.info("command sent", extra={"action": action, "target_id": target_id, "command_id": command_id,
                                       "instance_id": instance_id})
    return CommandRef(commandId=command_id, instanceId=instance_id, endpoint=target.endpoint,
                      servedSerialBefore=before)


def document_parameters(action: str, secret_arn: str, secret_version_id: str, target_config: str,
                        expected_serial: str, settings: InstallSettings,
                        installer: ports.InstallerPackage) -> dict[str, str]:
    """The install document's parameters (documents/install-bundle.ssm.yaml), name -> value.

    ExecutionTimeout is the stack's CommandTimeoutSeconds; CommandTimeout, each download and
    subprocess on the node, follows domain.command_timeouts; InstallerUrl / InstallerSha256
    name the InstallerLayer version (``installer``, from ports.InstallerSource).
    """
    return {"Action": action, "SecretArn": secret_arn, "SecretVersionId": secret_version_id,
            "TargetConfig": target_config, "ExpectedSerial": expected_serial,
            "ExecutionTimeout": str(settings.command_timeout_seconds),
            "CommandTimeout": str(subprocess_timeout_seconds(settings.command_timeout_seconds)),
            "InstallerUrl": installer.url, "InstallerSha256": installer.sha256}


def redact(text: str) -> str:
    """Remove any PEM private-key block and any text-form key material (openssl ``-text``
    colon-hex blocks and runs: domain.key_text.redact_key_text) from command output before it
    goes anywhere."""
    return redact_key_text(PRIVATE_KEY_BLOCK.sub("[redacted private key]", text))


def installer_result(stdout: str) -> dict[str, Any] | None:
    """The installer's last ``ROLLOUT_RESULT {json}`` line, or None."""
    found = RESULT_LINE.findall(stdout or "")
    if not found:
        return None
    try:
        parsed = json.loads(found[-1])
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


# Stages of installer/install_bundle.py's ROLLOUT_RESULT (its module docstring): "fetch" and
# "write" end before any live file is replaced (stage_files writes beside; swap_in puts back what
# it replaced before it reports "write"); "test" and "reload" come after the swap, and the
# installer restores the previous files itself before it reports them. Its error text says
# "restore failed" when that restore did not complete.
# "installer": the document's bootstrap stage (a killed installer says so by its reason, see files_changed).
BEFORE_SWAP_STAGES = frozenset({"installer", "fetch", "write"})
AFTER_SWAP_STAGES = frozenset({"test", "reload"})
RESTORE_FAILED_TEXT = "restore failed"
NOT_DELIVERED_DETAILS = frozenset({"deliverytimedout", "undeliverable", "terminated", "pending", "delayed"})


def files_changed(action: Action, state: CommandState, result: dict[str, Any] | None,
                  status_details: str | None) -> FilesChanged:
    """Did this command change the target's files? (contracts.FilesChanged)

    From the installer's ROLLOUT_RESULT (``result``; None when the command printed none: it
    never ran, was killed or is still running) and SSM's ``status_details``. A command that
    never reached the node (Undeliverable, Terminated, Delivery Timed Out, still Pending) is
    "no"; a result with a boolean ``restored`` field says itself whether the previous files are
    back ("restored" / "yes"); otherwise the stage decides (BEFORE_SWAP_STAGES "no",
    AFTER_SWAP_STAGES "restored" unless the error says RESTORE_FAILED_TEXT). A successful
    rollback is "yes" (files restored), or "no" when its result says ``restored: false``
    (nothing to restore). Everything else is "unknown": the iteration then attempts the rollback.
    """
    if action == "probe":  # read-only (installer/install_bundle.py do_probe)
        return "no"
    detail = "".join(ch for ch in (status_details or "").casefold() if ch.isalnum())
    if state == CommandState.UNDELIVERABLE or detail in NOT_DELIVERED_DETAILS:
        return "no"
    if state == CommandState.SUCCEEDED:
        return "no" if action == "rollback" and result is not None and result.get("restored") is False else "yes"
    if result is None or state != CommandState.FAILED:
        return "unknown"
    named, may_have_changed = installer_reason(result)  # the installer's named failures (ssm_status)
    if named is not None:
        return "unknown" if may_have_changed else "no"
    restored = result.get("restored")
    if isinstance(restored, bool):
        return "restored" if restored else "yes"
    stage = str(result.get("stage") or "")
    restore_failed = RESTORE_FAILED_TEXT in str(result.get("error") or "")
    if action == "install" and stage in BEFORE_SWAP_STAGES:
        return "yes" if restore_failed else "no"
    if action == "install" and stage in AFTER_SWAP_STAGES:
        return "yes" if restore_failed else "restored"
    return "unknown"


def command_status(command_id: str, instance_id: str, *, event_status: str | None = None,
                   invocation: dict[str, Any] | None = None,
                   commands: ports.Commands | None = None, action: Action = "install") -> CommandStatus:
    """Classify one finished invocation (D3) from GetCommandInvocation, with the installer's
    ROLLOUT_RESULT for the reason, the stage it reached, whether the target's files changed
    (files_changed; ``action`` is the command's: install or rollback) and the server's error text.

    ``event_status`` is the status EventBridge reported; it is used when the invocation
    cannot be read (InvocationDoesNotExist for an undeliverable command). Without
    ``invocation``, it is read through ``commands`` (GetCommandInvocation); with neither, the
    invocation counts as not found.
    Raises a named AwsError for API failures.
    """
    try:
        if invocation is None:
            if commands is None:
                raise ports.InvocationNotFound(command_id)
            invocation = commands.invocation(command_id, instance_id)
        state = classify_invocation(invocation.get("Status") or event_status or "Pending",
                                    invocation.get("StatusDetails"), invocation.get("ResponseCode"))
    except ports.InvocationNotFound:
        invocation = {"StatusDetails": event_status}
        state = classify_invocation(event_status or "Pending", event_status, None)
    if state == CommandState.PENDING:
        return CommandStatus(state="PENDING", filesChanged=files_changed(action, state, None,
                                                                         invocation.get("StatusDetails")))
    parsed = installer_result(invocation.get("StandardOutputContent", ""))
    result = parsed or {}
    stage = str(result["stage"]) if result.get("stage") else None
    changed = files_changed(action, state, parsed, invocation.get("StatusDetails"))
    if state == CommandState.SUCCEEDED:
        return CommandStatus(state="SUCCEEDED", stage=stage, filesChanged=changed, served=parse_served(parsed),
                             detail="nothing to restore" if action == "rollback" and changed == "no" else None)
    server_text = redact(str(result.get("serverOutput") or invocation.get("StandardErrorContent") or ""))[-600:]
    if state == CommandState.TIMED_OUT:
        return CommandStatus(state="TIMED_OUT", reason="command-timed-out", stage=stage, filesChanged=changed,
                             detail=f"{invocation.get('StatusDetails') or 'TimedOut'} on {instance_id}: {server_text}".strip(" :"))
    if state == CommandState.UNDELIVERABLE:
        return CommandStatus(state="UNDELIVERABLE", reason="undeliverable", filesChanged=changed,
                             detail=f"{invocation.get('StatusDetails') or 'Undeliverable'} on {instance_id}")
    if state == CommandState.CANCELLED:
        return CommandStatus(state="CANCELLED", reason="command-cancelled", stage=stage, filesChanged=changed,
                             detail=invocation.get("StatusDetails"))
    error = redact(str(result.get("error") or ""))
    detail = "; ".join(p for p in (f"stage {stage}" if stage else "", error, server_text) if p)[:800]
    # An install refused for a named cause (node-policy-denied, older-than-installed, ...: ssm_status
    # INSTALLER_REASONS) is reported by that name; any other failure as install-failed.
    named = installer_reason(parsed)[0] if action == "install" else None
    return CommandStatus(state="FAILED", reason=named or f"{action}-failed",
                         detail=detail or "command failed", stage=stage, filesChanged=changed)
