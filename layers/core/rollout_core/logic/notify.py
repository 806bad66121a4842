"""Notify: one SNS message per execution with every target's outcome, and the rollout's
outcome (ROLLED_OUT, PARTIAL, FAILED, SUPERSEDED, RENEWAL_FAILED, NO_TARGETS, REJECTED,
EXPIRY_NOTICE).

Rule D4: one failed target never stops the others; the run ends FAILED after this message
lists every target's outcome. A SUPERSEDED target (logic/lease.py: a newer request for the
certificate installs on it) is neither verified nor failed: it counts for neither.

After publishing, Notify records a notification marker in the rollout table
(RolloutRecords.mark_notified): the abnormal-end notifier (logic/abnormal_end.py) reads it, so a
rollout that ended FAILED after this message is not notified a second time. A marker that cannot
be written after MARKER_ATTEMPTS tries is logged and does not fail Notify (retrying Notify would
publish again); the abnormal-end notifier then sends a second message naming the end.

Before publishing, Notify deletes the rollout's staged bundle (logic/staging.py): the rollout is
over, no node may read its key any more. A transient failure raises (the Notify task is retried:
nothing was published yet); a permanent one is logged and the message still goes out (the next
export's sweep deletes the bundle).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from rollout_core import ports
from rollout_core.adapters.errors import AwsError, AwsPermanentError
from rollout_core.contracts import NotifyResult, RolloutState, StateError, TargetLine
from rollout_core.domain.expiry import expiry_phrase
from rollout_core.logic.staging import delete_rollout_bundle
from rollout_core.models import Decision, RolloutOutcome, TargetOutcome
from rollout_core.observability import logger, metrics

NOTIFIED_BY = "Notify"
MARKER_ATTEMPTS = 3
# The decisions after which ExportCertificate may have staged a bundle (it ran, perhaps failed).
STAGING_DECISIONS = frozenset({Decision.ROLLOUT, Decision.EXPORT_FAILED, Decision.LEASE_FAILED})


def end_staging(rollout: RolloutState, *, secret_prefix: str, staging: ports.BundleStaging) -> None:
    """Delete the rollout's staged bundle when ExportCertificate may have made one (module
    docstring). Raises a transient named AwsError; a permanent one is logged."""
    if rollout.certificateArn is None or rollout.decision not in STAGING_DECISIONS:
        return
    try:
        delete_rollout_bundle(secret_prefix, rollout.certificateArn, rollout.rolloutId, staging=staging)
    except AwsPermanentError as e:
        logger.warning("staged bundle not deleted; the next export's sweep deletes it",
                       extra={"rollout_id": rollout.rolloutId, "code": e.code})


def _mark_notified(records: ports.RolloutRecords, rollout_id: str, outcome: RolloutOutcome, message_id: str) -> None:
    """Write the notification marker, MARKER_ATTEMPTS tries; a failure is logged, not raised."""
    for attempt in range(1, MARKER_ATTEMPTS + 1):
        try:
            records.mark_notified(rollout_id, by=NOTIFIED_BY, outcome=outcome.value, message_id=message_id)
            return
        except AwsError as e:
            if attempt == MARKER_ATTEMPTS:
                logger.warning("notification marker not written: an abnormal end may be notified again",
                               extra={"rollout_id": rollout_id, "error": type(e).__name__, "code": e.code})


def _error_text(error: StateError | None) -> str:
    return error.text(1000) if error is not None else "unknown error"


def target_lines(rollout: RolloutState, records: list[TargetLine]) -> list[TargetLine]:
    """Every target of the rollout (``rollout.targetIds``, in that order) with its recorded
    outcome; a target without a record is FAILED/outcome-not-recorded."""
    by_id = {r.targetId: r for r in records}
    return [by_id[t] if t in by_id else TargetLine.not_recorded(t) for t in rollout.targetIds]


def _count(lines: list[TargetLine], outcome: TargetOutcome) -> int:
    return sum(1 for r in lines if r.outcome == outcome)


def rollout_outcome(lines: list[TargetLine]) -> RolloutOutcome:
    """ROLLED_OUT when every target is VERIFIED; SUPERSEDED when every target is VERIFIED or
    SUPERSEDED and some are SUPERSEDED (the newer rollout covers them: nothing failed); else,
    with a target ROLLED_BACK or FAILED, PARTIAL when some are VERIFIED, FAILED when none (D4)."""
    verified = _count(lines, TargetOutcome.VERIFIED)
    superseded = _count(lines, TargetOutcome.SUPERSEDED)
    if lines and verified == len(lines):
        return RolloutOutcome.ROLLED_OUT
    if lines and verified + superseded == len(lines):
        return RolloutOutcome.SUPERSEDED
    return RolloutOutcome.PARTIAL if verified else RolloutOutcome.FAILED


def old_certificate_text(r: TargetLine) -> str | None:
    """Whether a target that was not VERIFIED serves its old certificate again (what
    RecordTargetOutcome probed after the restore), or None when nothing is known of its old one."""
    if r.outcome == TargetOutcome.VERIFIED or r.servedSerialBefore is None:
        return None
    if r.servedSerialAfter == r.servedSerialBefore:
        return f"old certificate served again ({r.servedSerialBefore})"
    if r.servedSerialAfter is None:
        return f"old certificate NOT served: the target does not answer (it served {r.servedSerialBefore})"
    return f"old certificate NOT served: it serves {r.servedSerialAfter}, not {r.servedSerialBefore}"


def rolled_out_serial(rollout: RolloutState, lines: list[TargetLine]) -> str | None:
    """The serial this rollout installed: the exported serial its target records carry (ACM may
    have renewed between ValidateEvent and the export, logic/export.py), else ValidateEvent's."""
    exported = {r.expectedSerial for r in lines if r.expectedSerial}
    return exported.pop() if len(exported) == 1 else rollout.serial


def _target_text(r: TargetLine) -> str:
    text = f"- {r.targetId} {r.endpoint or ''} {r.outcome.value}"
    if r.reason:
        text += f" ({r.reason})"
    if r.servedSerialAfter:
        text += f", now serving {r.servedSerialAfter}"
    if r.detail and r.outcome != TargetOutcome.VERIFIED:
        text += f": {r.detail}"
    if r.outcome != TargetOutcome.VERIFIED:
        restore = f"restore attempted: {r.restoreResult or '-'}" if r.restoreAttempted else "no restore attempted"
        old = old_certificate_text(r)
        text += f" [{restore}{'; ' + old if old else ''}]"
    return text


#: Targets named one by one in an expiry notice; the rest are counted.
EXPIRY_TARGETS_SHOWN = 50


def _expiry_lines(rollout: RolloutState, now: datetime) -> tuple[str, list[str]]:
    """(subject, body lines) of an EXPIRY_NOTICE: when it expires (domain/expiry.py: whole days,
    UTC, from ACM's NotAfter and ``now``), which targets hold it, what the operator does."""
    name = rollout.domainName or rollout.certificateArn or "certificate"
    if rollout.notAfter is not None:
        phrase = expiry_phrase(rollout.notAfter, now)
        past = phrase.startswith("expired")
        subject = f"[EXPIRY_NOTICE] {name}: {'EXPIRED' if past else 'expires'}, not renewed"
        when = f"The certificate {phrase}."
    else:  # ACM gave no NotAfter: say so rather than guess
        subject = f"[EXPIRY_NOTICE] {name}: expiry notice, not renewed"
        when = "ACM gave no expiry date (NotAfter) for this certificate."
    targets = rollout.targetIds
    shown = ", ".join(targets[:EXPIRY_TARGETS_SHOWN])
    if len(targets) > EXPIRY_TARGETS_SHOWN:
        shown += f" and {len(targets) - EXPIRY_TARGETS_SHOWN} more"
    body = [f"Expires:     {when}",
            f"Targets:     {len(targets)} still hold this certificate (inventory; none records a newer serial)"
            + (f": {shown}" if targets else ": no target is registered")]
    if rollout.reason:
        body.append(f"Note:        {rollout.reason}")
    body += ["", "AWS Health sent an expiry notice, and ACM holds no newer certificate: the renewal has NOT",
             "happened. Nothing was exported or installed. Check the private CA (ACTIVE, not expired, its",
             "permissions for ACM) and the certificate's renewal eligibility (aws acm describe-certificate:",
             "RenewalEligibility, RenewalSummary), or renew it with `cert-rollout renew`. Once ACM has",
             "renewed it, the renewal event rolls the new serial out to these targets."]
    return subject, body


def format_message(outcome: RolloutOutcome, rollout: RolloutState, lines: list[TargetLine], *,
                   now: datetime | None = None) -> tuple[str, str]:
    """(subject, body) of the notification: plain text an operator reads in a mail client.
    The subject stays within SNS's 100 characters. ``now`` (default: the current time, UTC) is
    what an EXPIRY_NOTICE counts its days from."""
    name = rollout.domainName or rollout.certificateArn or "event"
    serial = rolled_out_serial(rollout, lines) or "?"
    head = [f"Certificate rollout: {outcome.value}",
            f"Certificate: {rollout.certificateArn or '-'}",
            f"Domain:      {rollout.domainName or '-'}",
            f"Serial:      {serial}",
            f"Rollout:     {rollout.rolloutId} (Step Functions execution name)"]
    if outcome in (RolloutOutcome.ROLLED_OUT, RolloutOutcome.PARTIAL, RolloutOutcome.FAILED,
                   RolloutOutcome.SUPERSEDED) and lines:
        verified = _count(lines, TargetOutcome.VERIFIED)
        superseded = _count(lines, TargetOutcome.SUPERSEDED)
        # SNS cuts subjects at 100 characters: never a partial serial there (the body has it).
        subject = f"[{outcome.value}] {name}: {verified}/{len(lines)} targets serve {serial}"
        if len(subject) > 100:
            subject = f"[{outcome.value}] {name}: {verified}/{len(lines)} targets serve the new serial"
        head.append(f"Targets:     {verified} verified, {_count(lines, TargetOutcome.ROLLED_BACK)} "
                    f"rolled back, {_count(lines, TargetOutcome.FAILED)} failed, {superseded} superseded, "
                    f"of {len(lines)}")
        head.append("")
        head += [_target_text(r) for r in lines]
        if superseded:
            head += ["", "SUPERSEDED targets were left to the newer rollout named on their line: it installs the",
                     "certificate's current serial on every target."]
        if verified + superseded < len(lines):
            head += ["", "Targets not VERIFIED still serve their previous certificate or none; fix them, then",
                     "start a manual redeploy: {\"certificateArn\": \"...\", \"force\": true}."]
    elif outcome == RolloutOutcome.RENEWAL_FAILED:
        subject = f"[RENEWAL_FAILED] {name}: renewal needs action"
        days = rollout.daysToExpiry if rollout.daysToExpiry is not None else "-"
        head += [f"Reason:      {rollout.reason or '-'}",
                 f"Days to expiry: {days}",
                 "", "Nothing was installed. ACM could not renew this certificate; fix the cause (for example the",
                 "private CA's permissions), then ACM retries, or renew it with `cert-rollout renew`."]
    elif outcome == RolloutOutcome.NO_TARGETS:
        subject = f"[NO_TARGETS] {name}: renewed, but no target is registered"
        head += ["", "WARNING: nothing was installed because the inventory lists no target for this certificate.",
                 "If it is exported anywhere, register those targets (cert-rollout targets add) and redeploy."]
    elif outcome == RolloutOutcome.EXPIRY_NOTICE:
        subject, body = _expiry_lines(rollout, now or datetime.now(UTC))
        head += body
    elif outcome == RolloutOutcome.REJECTED:
        subject = "[REJECTED] certificate rollout event rejected"
        head += [f"Error:       {_error_text(rollout.error)}", "", "Nothing was installed."]
    elif rollout.decision == Decision.LEASE_FAILED:  # FAILED before any target: no lease
        subject = f"[FAILED] {name}: lease not acquired, nothing installed"
        why = _error_text(rollout.error) if rollout.error is not None else (rollout.reason or "unknown")
        head += [f"Error:       {why}", "",
                 "Another rollout of this certificate held its lease (one writer per certificate), or the lease",
                 "could not be written. Nothing was installed; start a manual redeploy once that rollout ended."]
    else:  # FAILED before any target (export failed)
        subject = f"[FAILED] {name}: export failed, nothing installed"
        head += [f"Error:       {_error_text(rollout.error)}", "",
                 "Nothing was installed on any target; every target keeps serving its current certificate."]
    return subject, "\n".join(head) + "\n"


def notify(rollout: RolloutState, *, records: ports.RolloutRecords, notifications: ports.Notifications,
           staging: ports.BundleStaging, secret_prefix: str) -> NotifyResult:
    """Delete the rollout's staged bundle, decide the rollout's outcome, publish one message,
    return the counts.

    ``rollout`` is the state's $.rollout (ValidateEvent's result, or the rejection/export
    failure with its $.error). Ports: ``records`` (the targets' outcome records; the
    notification marker is written there after publishing),
    ``notifications`` (the topic), ``staging`` (the bundle under ``secret_prefix``, end_staging).
    Raises a named AwsError when SNS or DynamoDB fails (or a transient one deleting the bundle),
    and pydantic.ValidationError when a rollout record is not an outcome record.
    """
    end_staging(rollout, secret_prefix=secret_prefix, staging=staging)
    lines: list[TargetLine] = []
    if rollout.decision == Decision.ROLLOUT:
        lines = target_lines(rollout, [TargetLine.model_validate(item) for item in records.list(rollout.rolloutId)])
        outcome = rollout_outcome(lines)
    elif rollout.decision in (Decision.EXPORT_FAILED, Decision.LEASE_FAILED):
        outcome = RolloutOutcome.FAILED
    else:
        outcome = RolloutOutcome(rollout.decision.value)
    subject, body = format_message(outcome, rollout, lines)
    message_id = notifications.publish(subject, body, {"outcome": outcome.value,
                                                       "certificateArn": rollout.certificateArn or "",
                                                       "rolloutId": rollout.rolloutId})
    _mark_notified(records, rollout.rolloutId, outcome, message_id)
    verified = _count(lines, TargetOutcome.VERIFIED)
    metrics.add_metric(name=f"Rollout{outcome.value.title().replace('_', '')}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TargetsVerified", unit=MetricUnit.Count, value=verified)
    metrics.add_metric(name="TargetsNotVerified", unit=MetricUnit.Count, value=len(lines) - verified)
    logger.info("notification published", extra={"outcome": outcome.value, "message_id": message_id})
    return NotifyResult(outcome=outcome, rolloutId=rollout.rolloutId, certificateArn=rollout.certificateArn,
                        expectedSerial=rolled_out_serial(rollout, lines), targetCount=len(lines), verified=verified,
                        rolledBack=_count(lines, TargetOutcome.ROLLED_BACK),
                        failed=_count(lines, TargetOutcome.FAILED),
                        superseded=_count(lines, TargetOutcome.SUPERSEDED), messageId=message_id)
