"""Notify: one SNS message per execution with every target's outcome, and the rollout's
outcome (ROLLED_OUT, PARTIAL, FAILED, RENEWAL_FAILED, NO_TARGETS, REJECTED).

Rule D4: one failed target never stops the others; the run ends FAILED after this message
lists every target's outcome.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from rollout_core import ports
from rollout_core.models import Decision, RolloutOutcome, TargetOutcome
from rollout_core.observability import logger, metrics


class NotifyResult(BaseModel):
    outcome: RolloutOutcome
    rolloutId: str
    certificateArn: str | None = None
    expectedSerial: str | None = None
    targetCount: int = 0
    verified: int = 0
    rolledBack: int = 0
    failed: int = 0
    messageId: str


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return "unknown error"
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        cause = parsed.get("errorMessage", cause) if isinstance(parsed, dict) else cause
    except (TypeError, json.JSONDecodeError):
        pass
    return f"{error.get('Error', 'Error')}: {cause}"[:1000]


def target_lines(rollout: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target of the rollout with its outcome; a target without a record is FAILED."""
    by_id = {r["targetId"]: r for r in records}
    lines = []
    for target_id in rollout.get("targetIds") or []:
        record = by_id.get(target_id) or {"targetId": target_id, "outcome": TargetOutcome.FAILED.value,
                                          "reason": "outcome-not-recorded"}
        lines.append(record)
    return lines


def rollout_outcome(lines: list[dict[str, Any]]) -> RolloutOutcome:
    verified = sum(1 for r in lines if r["outcome"] == TargetOutcome.VERIFIED)
    if lines and verified == len(lines):
        return RolloutOutcome.ROLLED_OUT
    return RolloutOutcome.PARTIAL if verified else RolloutOutcome.FAILED


def format_message(outcome: RolloutOutcome, rollout: dict[str, Any], lines: list[dict[str, Any]]) -> tuple[str, str]:
    """(subject, body) of the notification: plain text an operator reads in a mail client."""
    name = rollout.get("domainName") or rollout.get("certificateArn") or "event"
    serial = rollout.get("serial") or "?"
    head = [f"Certificate rollout: {outcome.value}",
            f"Certificate: {rollout.get('certificateArn', '-')}",
            f"Domain:      {rollout.get('domainName') or '-'}",
            f"Serial:      {serial}",
            f"Rollout:     {rollout.get('rolloutId', '-')} (Step Functions execution name)"]
    if outcome in (RolloutOutcome.ROLLED_OUT, RolloutOutcome.PARTIAL, RolloutOutcome.FAILED) and lines:
        counts = {o: sum(1 for r in lines if r["outcome"] == o) for o in TargetOutcome}
        # SNS cuts subjects at 100 characters: never a partial serial there (the body has it).
        subject = f"[{outcome.value}] {name}: {counts[TargetOutcome.VERIFIED]}/{len(lines)} targets serve {serial}"
        if len(subject) > 100:
            subject = f"[{outcome.value}] {name}: {counts[TargetOutcome.VERIFIED]}/{len(lines)} targets serve the new serial"
        head.append(f"Targets:     {counts[TargetOutcome.VERIFIED]} verified, {counts[TargetOutcome.ROLLED_BACK]} "
                    f"rolled back, {counts[TargetOutcome.FAILED]} failed, of {len(lines)}")
        head.append("")
        for r in lines:
            text = f"- {r['targetId']} {r.get('endpoint') or ''} {r['outcome']}"
            if r.get("reason"):
                text += f" ({r['reason']})"
            if r.get("servedSerialAfter"):
                text += f", now serving {r['servedSerialAfter']}"
            if r.get("detail") and r["outcome"] != TargetOutcome.VERIFIED:
                text += f": {r['detail']}"
            head.append(text)
        if outcome != RolloutOutcome.ROLLED_OUT:
            head += ["", "Targets not VERIFIED still serve their previous certificate or none; fix them, then",
                     "start a manual redeploy: {\"certificateArn\": \"...\", \"force\": true}."]
    elif outcome == RolloutOutcome.RENEWAL_FAILED:
        subject = f"[RENEWAL_FAILED] {name}: renewal needs action"
        head += [f"Reason:      {rollout.get('reason') or '-'}",
                 f"Days to expiry: {rollout.get('daysToExpiry') if rollout.get('daysToExpiry') is not None else '-'}",
                 "", "Nothing was installed. ACM could not renew this certificate; fix the cause (for example the",
                 "private CA's permissions), then ACM retries, or renew it with `cert-rollout renew`."]
    elif outcome == RolloutOutcome.NO_TARGETS:
        subject = f"[NO_TARGETS] {name}: renewed, but no target is registered"
        head += ["", "WARNING: nothing was installed because the inventory lists no target for this certificate.",
                 "If it is exported anywhere, register those targets (cert-rollout targets add) and redeploy."]
    elif outcome == RolloutOutcome.REJECTED:
        subject = "[REJECTED] certificate rollout event rejected"
        head += [f"Error:       {_error_text(rollout.get('error'))}", "", "Nothing was installed."]
    else:  # FAILED before any target (export failed)
        subject = f"[FAILED] {name}: export failed, nothing installed"
        head += [f"Error:       {_error_text(rollout.get('error'))}", "",
                 "Nothing was installed on any target; every target keeps serving its current certificate."]
    return subject, "\n".join(head) + "\n"


def notify(rollout: dict[str, Any], *, records: ports.RolloutRecords,
           notifications: ports.Notifications) -> NotifyResult:
    """Decide the rollout's outcome, publish one message, return the counts.

    ``rollout`` is the state's $.rollout (ValidateEvent's result, or the rejection/export
    failure with its $.error). Ports: ``records`` (the targets' outcome records),
    ``notifications`` (the topic). Raises a named AwsError when SNS or DynamoDB fails.
    """
    decision = rollout.get("decision")
    lines: list[dict[str, Any]] = []
    if decision == Decision.ROLLOUT:
        lines = target_lines(rollout, records.list(rollout["rolloutId"]))
        outcome = rollout_outcome(lines)
    elif decision == Decision.EXPORT_FAILED:
        outcome = RolloutOutcome.FAILED
    else:
        outcome = RolloutOutcome(decision)
    subject, body = format_message(outcome, rollout, lines)
    message_id = notifications.publish(subject, body, {"outcome": outcome.value,
                                                       "certificateArn": rollout.get("certificateArn") or ""})
    counts = {o: sum(1 for r in lines if r["outcome"] == o) for o in TargetOutcome}
    metrics.add_metric(name=f"Rollout{outcome.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TargetsVerified", unit=MetricUnit.Count, value=counts[TargetOutcome.VERIFIED])
    metrics.add_metric(name="TargetsNotVerified", unit=MetricUnit.Count,
                       value=len(lines) - counts[TargetOutcome.VERIFIED])
    logger.info("notification published", extra={"outcome": outcome.value, "message_id": message_id})
    return NotifyResult(outcome=outcome, rolloutId=rollout.get("rolloutId", ""),
                        certificateArn=rollout.get("certificateArn"), expectedSerial=rollout.get("serial"),
                        targetCount=len(lines), verified=counts[TargetOutcome.VERIFIED],
                        rolledBack=counts[TargetOutcome.ROLLED_BACK], failed=counts[TargetOutcome.FAILED],
                        messageId=message_id)
