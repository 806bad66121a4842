"""RecordTargetOutcome: turn one target's path through the Map iteration into its outcome.

  install command FAILED, files restored by the installer  -> ROLLED_BACK / install-failed
  install command FAILED before anything was replaced       -> FAILED / install-failed
  command TIMED_OUT / UNDELIVERABLE / CANCELLED              -> FAILED / command-timed-out | undeliverable | command-cancelled
  verified                                                   -> VERIFIED
  unreachable past the verify deadline                       -> FAILED / unreachable
  not serving the new serial, rollback succeeded             -> ROLLED_BACK / not-serving-new-serial
  not serving the new serial, rollback failed                -> FAILED / rollback-failed
  a step raised (Catch)                                      -> FAILED / <reason of the error's name>
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from rollout_core import ports
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
}
RECORD_TTL_SECONDS = 400 * 86400


class OutcomeRecord(BaseModel):
    rolloutId: str
    targetId: str
    certificateArn: str
    endpoint: str | None = None
    outcome: TargetOutcome
    reason: str | None = None
    detail: str | None = None
    expectedSerial: str | None = None
    servedSerialBefore: str | None = None
    servedSerialAfter: str | None = None
    recordedAt: str
    expiresAt: int


def _error_detail(error: dict[str, Any]) -> tuple[str, str]:
    name = str(error.get("Error", "Error"))
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        message = str(parsed.get("errorMessage", "")) if isinstance(parsed, dict) else str(parsed)
    except (TypeError, json.JSONDecodeError):
        message = str(cause)
    return name, f"{name}: {message}"[:800]


def classify(state: dict[str, Any]) -> tuple[TargetOutcome, str | None, str | None]:
    """(outcome, reason, detail) of one iteration state (see the module table)."""
    if state.get("error"):
        name, detail = _error_detail(state["error"])
        return TargetOutcome.FAILED, ERROR_REASONS.get(name, "step-failed"), detail
    install = state.get("installCommand") or {}
    if install.get("state") != "SUCCEEDED":
        if install.get("state") == "FAILED" and install.get("restored"):
            return TargetOutcome.ROLLED_BACK, "install-failed", install.get("detail")
        return TargetOutcome.FAILED, install.get("reason") or "install-failed", install.get("detail")
    verify = state.get("verify") or {}
    if verify.get("state") == "VERIFIED":
        return TargetOutcome.VERIFIED, None, None
    if verify.get("state") == "UNREACHABLE":
        return TargetOutcome.FAILED, "unreachable", verify.get("detail")
    rollback = state.get("rollbackCommand") or {}
    if rollback.get("state") == "SUCCEEDED":
        return TargetOutcome.ROLLED_BACK, "not-serving-new-serial", verify.get("detail")
    detail = "; ".join(p for p in (verify.get("detail"), rollback.get("detail")) if p)
    return TargetOutcome.FAILED, "rollback-failed", detail or None


def record_outcome(state: dict[str, Any], *, settings: RecordSettings, inventory: ports.Inventory,
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
    certificate_arn, target_id = state["certificateArn"], state["targetId"]
    install = state.get("installCommand") or {}  # CommandCallback's output: status + endpoint, served serial
    endpoint = install.get("endpoint")
    after = None
    try:
        target = inventory.get(certificate_arn, target_id)
        endpoint = endpoint or target.endpoint
        after = probe.served_certificate(target.host, target.port, target.sni,
                                         timeout=settings.probe_timeout_seconds).serial_hex
    except (ProbeError, ports.TargetNotFound, ValidationError) as e:  # unknown target or invalid settings
        logger.info("served serial after the rollout unknown", extra={"target_id": target_id, "error": str(e)})
    record = OutcomeRecord(
        rolloutId=state["rolloutId"], targetId=target_id, certificateArn=certificate_arn, endpoint=endpoint,
        outcome=outcome, reason=reason, detail=detail, expectedSerial=state.get("expectedSerial"),
        servedSerialBefore=install.get("servedSerialBefore"), servedSerialAfter=after,
        recordedAt=now.isoformat(), expiresAt=int(time.time()) + RECORD_TTL_SECONDS,
    )
    records.put(record.model_dump(mode="json"))
    if outcome == TargetOutcome.VERIFIED and record.expectedSerial:
        inventory.mark_deployed(certificate_arn, target_id, record.expectedSerial, outcome.value, record.recordedAt)
    log = logger.info if outcome == TargetOutcome.VERIFIED else logger.warning
    log("target outcome", extra={"target_id": target_id, "outcome": outcome.value, "reason": reason})
    return record
