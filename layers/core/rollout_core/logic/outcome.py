"""RecordTargetOutcome: turn one target's path through the Map iteration into its outcome.

Every path after the target's files may have changed ends in a restore attempt before this
step (statemachine/rollout.asl.json: one RollbackTarget state, reached from each such path):

  InstallTarget function raised (no command was sent)      -> FAILED / <reason of the error's name>
  install command ended before the swap (filesChanged no)  -> FAILED / install-failed | command-timed-out | undeliverable | command-cancelled
  install command FAILED after the swap, the installer
    restored the previous files itself (filesChanged restored) -> ROLLED_BACK / install-failed
  verified                                                 -> VERIFIED
  unreachable before the install and after it              -> FAILED / unreachable (no rollback: nothing
                                                              proves the new files are at fault)
  otherwise RollbackTarget ran, for a cause:
    install FAILED after the swap, restore not confirmed     install-failed
    install TIMED_OUT / CANCELLED, files unknown             command-timed-out / command-cancelled
    VerifyTarget raised (verification could not run)        verify-failed
    answered before the install, unreachable after it        unreachable-after-install
    serves another serial, or no certificate (handshake)     not-serving-new-serial
    serves the new serial but a client would refuse it       chain-invalid | expired | hostname-mismatch
                                                             (logic/verify.py, domain/tls_checks.py)
  and the restore ended:
    SUCCEEDED, previous files restored                    -> ROLLED_BACK / <cause>
    SUCCEEDED, nothing to restore                         -> FAILED / <cause> (detail says so)
    FAILED, TIMED_OUT, or the rollback step raised        -> FAILED / rollback-failed, detail "<cause>: ...; restore ..."

(CANCELLED: someone cancelled the command in SSM, or ReconcileInstall cancelled a command still
running at the task's deadline.) The record also names the restore attempt and its result
(restore_result), and what the target serves after, so the notification says whether the old
certificate is served again: VerifyTarget's servedSerial when nothing was restored since (no
handshake), else one handshake through logic.observe.
  install refused: a newer request holds or waits for the lease -> SUPERSEDED / superseded
    (logic/lease.py fence_target_command raised Superseded; nothing was sent to the target)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import ValidationError

from rollout_core import ports
from rollout_core.contracts import IterationState, OutcomeRecord, StateError, VerifyResult
from rollout_core.domain.tls_checks import FINAL_REASONS
from rollout_core.logic.observe import observe
from rollout_core.logic.verify_node import node_served_after
from rollout_core.models import TargetOutcome
from rollout_core.observability import logger
from rollout_core.settings import RecordSettings

ERROR_REASONS = {
    "NodeNotManaged": "undeliverable",
    "TargetNotFound": "target-not-in-inventory",
    "TargetNotInRollout": "target-not-in-rollout",  # logic/commands.py rollout_instance_id
    "ValidationError": "invalid-target-settings",
    "Sandbox.Timedout": "step-timed-out",
    "States.Timeout": "step-timed-out",
    "LeaseNotHeld": "lease-not-held",
}
# Errors that are not a failure of the target: (outcome, reason) by the error's name.
ERROR_OUTCOMES = {
    "Superseded": (TargetOutcome.SUPERSEDED, "superseded"),
}
RECORD_TTL_SECONDS = 400 * 86400


def _error_outcome(error: StateError) -> tuple[TargetOutcome, str, str]:
    """SUPERSEDED for the errors of ERROR_OUTCOMES (detail: the error's message, "superseded by
    serial ..."), else FAILED with the reason named after the caught error (ERROR_REASONS, else
    step-failed)."""
    if error.Error in ERROR_OUTCOMES:
        outcome, reason = ERROR_OUTCOMES[error.Error]
        return outcome, reason, error.message()[:800]
    return TargetOutcome.FAILED, ERROR_REASONS.get(error.Error, "step-failed"), error.text(800)


def _joined(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text[:800] or None


def _rollback_cause(state: IterationState) -> tuple[str, str | None]:
    """(cause, detail) of a rollback: why the iteration reached RollbackTarget."""
    install = state.installCommand
    assert install is not None
    if install.state != "SUCCEEDED":
        return install.reason or "install-failed", install.detail
    if state.verifyError is not None:
        return "verify-failed", state.verifyError.text(400)
    verify = state.verify if isinstance(state.verify, VerifyResult) else None
    if verify is None:  # verification never answered (no result and no error)
        return "verify-failed", None
    if verify.state == "UNREACHABLE":
        return "unreachable-after-install", verify.detail
    if verify.reason in FINAL_REASONS:  # the new serial served, refused by a client: chain-invalid, ...
        return verify.reason, verify.detail
    return "not-serving-new-serial", verify.detail


def _after_restore(state: IterationState, cause: str, cause_detail: str | None
                   ) -> tuple[TargetOutcome, str | None, str | None]:
    """The outcome once RollbackTarget ran (or failed to run) for ``cause``."""
    rollback = state.rollbackCommand
    if rollback is not None and rollback.state == "SUCCEEDED":
        if rollback.filesChanged == "no":
            return TargetOutcome.FAILED, cause, _joined(cause_detail, "restore: nothing to restore")
        return TargetOutcome.ROLLED_BACK, cause, cause_detail
    _, restore = restore_result(state)
    return TargetOutcome.FAILED, "rollback-failed", _joined(f"{cause}: {cause_detail or '-'}", restore)


def classify(state: IterationState) -> tuple[TargetOutcome, str | None, str | None]:
    """(outcome, reason, detail) of one iteration state (see the module table).

    ``detail`` is text for the notification (the server's or the step's error, and for a
    failed restore both the cause's and the restore's), None when there is nothing to say; it
    never holds key material (logic.commands.redact).
    """
    if state.error is not None:
        return _error_outcome(state.error)
    install = state.installCommand
    if install is None:  # no result and no error: the install never reported
        return TargetOutcome.FAILED, "install-failed", None
    if install.state != "SUCCEEDED" and install.filesChanged == "no":
        return TargetOutcome.FAILED, install.reason or "install-failed", install.detail
    if install.state != "SUCCEEDED" and install.filesChanged == "restored":
        return TargetOutcome.ROLLED_BACK, "install-failed", install.detail
    verify = state.verify if isinstance(state.verify, VerifyResult) else None
    if install.state == "SUCCEEDED" and state.verifyError is None and verify is not None:
        if verify.state == "VERIFIED":
            return TargetOutcome.VERIFIED, None, None
        if verify.state == "UNREACHABLE" and install.servedSerialBefore is None:
            return TargetOutcome.FAILED, "unreachable", verify.detail
    cause, cause_detail = _rollback_cause(state)
    return _after_restore(state, cause, cause_detail)


def restore_result(state: IterationState) -> tuple[bool, str | None]:
    """(restore attempted, what it ended with) for the record and the notification: the
    installer's own restore (install FAILED after the swap), or RollbackTarget's result, or
    (False, None) when no restore was attempted."""
    install = state.installCommand
    if install is not None and install.state != "SUCCEEDED" and install.filesChanged == "restored":
        return True, "previous files restored by the installer"
    rollback = state.rollbackCommand
    if state.rollbackError is not None and rollback is None:
        return True, f"restore not run: {state.rollbackError.text(300)}"
    if rollback is None:
        return False, None
    if rollback.state == "SUCCEEDED":
        return True, "nothing to restore" if rollback.filesChanged == "no" else "previous files restored"
    reconcile = f" ({state.reconcileError.text(200)})" if state.reconcileError is not None else ""
    return True, f"restore {rollback.state.lower()}: {rollback.detail or rollback.reason or '-'}{reconcile}"[:500]


def served_after(state: IterationState) -> str | None:
    """What the target serves at the end of the iteration when the state already says it:
    VerifyTarget's servedSerial, provided no rollback command was sent since (a restore changes
    what is served); else None (then record_outcome probes once)."""
    verify = state.verify if isinstance(state.verify, VerifyResult) else None
    if verify is None or verify.servedSerial is None:
        return None
    if state.rollbackCommand is not None or state.rollbackError is not None or state.rollbackTimeout is not None:
        return None
    return verify.servedSerial


def record_outcome(state: IterationState, *, settings: RecordSettings, inventory: ports.Inventory,
                   records: ports.RolloutRecords, probe: ports.TlsProbe,
                   now: datetime | None = None) -> OutcomeRecord:
    """Classify, read what the target serves now (served_after, else one handshake), write the rollout record, and on
    VERIFIED mark the inventory item as deployed. Returns the record (no key material).
    Ports: ``inventory`` (the target; mark_deployed), ``records`` (the rollout record),
    ``probe`` (served serial after).
    Raises a named AwsError when DynamoDB fails (the state machine then reports the target
    as FAILED/outcome-not-recorded)."""
    now = now or datetime.now(UTC)
    outcome, reason, detail = classify(state)
    restore_attempted, restore = restore_result(state)
    certificate_arn, target_id = state.certificateArn, state.targetId
    install = state.installCommand  # CommandCallback's output: status + endpoint, served serial before
    endpoint = install.endpoint if install is not None else None
    after = served_after(state)
    if after is None or endpoint is None:
        try:
            target = inventory.get(certificate_arn, target_id)
            endpoint = endpoint or target.endpoint
            if after is None and target.verifyFrom == "node":  # the Lambda cannot reach it: what its node saw last
                after = node_served_after(state)
            elif after is None:
                seen = observe(probe, target.host, target.port, target.sni, timeout=settings.probe_timeout_seconds)
                after = seen.served_serial_hex
                if seen.error is not None:
                    logger.info("served serial after the rollout unknown",
                                extra={"target_id": target_id, "error": str(seen.error)})
        except (ports.TargetNotFound, ValidationError) as e:  # unknown target or invalid settings
            logger.info("served serial after the rollout unknown", extra={"target_id": target_id, "error": str(e)})
    record = OutcomeRecord(
        rolloutId=state.rolloutId, targetId=target_id, certificateArn=certificate_arn, endpoint=endpoint,
        outcome=outcome, reason=reason, detail=detail, expectedSerial=state.expectedSerial,
        servedSerialBefore=install.servedSerialBefore if install is not None else None, servedSerialAfter=after,
        restoreAttempted=restore_attempted, restoreResult=restore, recordedAt=now.isoformat(), expiresAt=int(time.time()) + RECORD_TTL_SECONDS,
    )
    records.put(record.model_dump(mode="json"))
    if outcome == TargetOutcome.VERIFIED and record.expectedSerial:
        inventory.mark_deployed(certificate_arn, target_id, record.expectedSerial, outcome.value, record.recordedAt)
    log = logger.info if outcome == TargetOutcome.VERIFIED else logger.warning
    log("target outcome", extra={"target_id": target_id, "outcome": outcome.value, "reason": reason,
                                 "restore": restore})
    return record
