"""RecordTargetOutcome: turn one target's path through the Map iteration into its outcome.

  install command FAILED, files restored by the installer  -> ROLLED_BACK / install-failed
  install command FAILED before anything was replaced       -> FAILED / install-failed
  command TIMED_OUT / UNDELIVERABLE / CANCELLED              -> FAILED / command-timed-out | undeliverable | command-cancelled
    (CANCELLED: someone cancelled the command in SSM; the rollout itself never cancels one)
  verified                                                   -> VERIFIED
  unreachable past the verify deadline                       -> FAILED / unreachable
  not serving the new serial, rollback succeeded             -> ROLLED_BACK / not-serving-new-serial
  not serving the new serial, rollback failed                -> FAILED / rollback-failed
  install refused: a newer request holds or waits for the lease -> SUPERSEDED / superseded
    (logic/lease.py fence_target_command raised Superseded; nothing was sent to the target)
  a step raised (Catch)                                      -> FAILED / <reason of the error's name>
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pydantic import ValidationError

from rollout_core import ports
from rollout_core.contracts import IterationState, OutcomeRecord, StateError, VerifyResult
from rollout_core.models import TargetOutcome
from rollout_core.observability import logger
from rollout_core.probe import ProbeError
from rollout_core.settings import RecordSettings

ERROR_REASONS = {
    "NodeNotManaged": "undeliverable",
    "TargetNotFound": "target-not-in-inventory",
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


def classify(state: IterationState) -> tuple[TargetOutcome, str | None, str | None]:
    """(outcome, reason, detail) of one iteration state (see the module table).

    ``detail`` is text for the notification (the server's or the step's error), None when
    there is nothing to say; it never holds key material (logic.commands.redact).
    """
    if state.error is not None:
        return _error_outcome(state.error)
    install = state.installCommand
    if install is None:  # no result and no error: the install never reported
        return TargetOutcome.FAILED, "install-failed", None
    if install.state != "SUCCEEDED":
        if install.state == "FAILED" and install.restored:
            return TargetOutcome.ROLLED_BACK, "install-failed", install.detail
        return TargetOutcome.FAILED, install.reason or "install-failed", install.detail
    verify = state.verify if isinstance(state.verify, VerifyResult) else None  # else: verification never answered
    verify_detail = verify.detail if verify is not None else None
    if verify is not None and verify.state == "VERIFIED":
        return TargetOutcome.VERIFIED, None, None
    if verify is not None and verify.state == "UNREACHABLE":
        return TargetOutcome.FAILED, "unreachable", verify_detail
    rollback = state.rollbackCommand
    if rollback is not None and rollback.state == "SUCCEEDED":
        return TargetOutcome.ROLLED_BACK, "not-serving-new-serial", verify_detail
    rollback_detail = rollback.detail if rollback is not None else None
    detail = "; ".join(p for p in (verify_detail, rollback_detail) if p)
    return TargetOutcome.FAILED, "rollback-failed", detail or None


def record_outcome(state: IterationState, *, settings: RecordSettings, inventory: ports.Inventory,
                   records: ports.RolloutRecords, probe: ports.TlsProbe,
                   now: datetime | None = None) -> OutcomeRecord:
    """Classify, probe once what the target serves now, write the rollout record, and on
    VERIFIED mark the inventory item as deployed. Returns the record (no key material).
    Ports: ``inventory`` (the target; mark_deployed), ``records`` (the rollout record),
    ``probe`` (served serial after).
    Raises a named AwsError when DynamoDB fails (the state machine then reports the target
    as FAILED/outcome-not-recorded)."""
    now = now or datetime.now(UTC)
    outcome, reason, detail = classify(state)
    certificate_arn, target_id = state.certificateArn, state.targetId
    install = state.installCommand  # CommandCallback's output: status + endpoint, served serial before
    endpoint = install.endpoint if install is not None else None
    after = None
    try:
        target = inventory.get(certificate_arn, target_id)
        endpoint = endpoint or target.endpoint
        after = probe.served_certificate(target.host, target.port, target.sni,
                                         timeout=settings.probe_timeout_seconds).serial_hex
    except (ProbeError, ports.TargetNotFound, ValidationError) as e:  # unknown target or invalid settings
        logger.info("served serial after the rollout unknown", extra={"target_id": target_id, "error": str(e)})
    record = OutcomeRecord(
        rolloutId=state.rolloutId, targetId=target_id, certificateArn=certificate_arn, endpoint=endpoint,
        outcome=outcome, reason=reason, detail=detail, expectedSerial=state.expectedSerial,
        servedSerialBefore=install.servedSerialBefore if install is not None else None, servedSerialAfter=after,
        recordedAt=now.isoformat(), expiresAt=int(time.time()) + RECORD_TTL_SECONDS,
    )
    records.put(record.model_dump(mode="json"))
    if outcome == TargetOutcome.VERIFIED and record.expectedSerial:
        inventory.mark_deployed(certificate_arn, target_id, record.expectedSerial, outcome.value, record.recordedAt)
    log = logger.info if outcome == TargetOutcome.VERIFIED else logger.warning
    log("target outcome", extra={"target_id": target_id, "outcome": outcome.value, "reason": reason})
    return record
