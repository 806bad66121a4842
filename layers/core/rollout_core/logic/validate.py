"""ValidateEvent: what does this event ask for, and has it been done already?

Rules (DESIGN.md "Triggers"): the decision rests on DescribeCertificate, never on an event's
prose; a (certificate ARN, serial) pair is rolled out once (events arrive at least once,
Health and ACM both announce one renewal); a manual request with force=true rolls out again.

A claim never blocks a serial for good (issue 10, item 6). A later event for a claimed serial
is a duplicate (ALREADY_DEPLOYED) while the claiming execution runs, after it SUCCEEDED, and
after it ended FAILED with target outcomes recorded (it installed, verified and notified: a
redelivered event must not install twice; an operator redeploys with force=true). When the
claiming execution ended ABORTED or TIMED_OUT, or FAILED before any target outcome was
recorded (e.g. the export failed), its rollout did not finish: the claim is released
(conditionally, adapters/claims.py) and this execution claims the serial and rolls it out.
Step Functions (DescribeExecution) is asked, not an event: its status-change events are
best effort. An execution Step Functions no longer knows (90-day retention) keeps its claim.

An expiry notice (AWS Health "has expired" / "is due to expire", domain/events.py) is no
renewal (issue 15, item 5). DescribeCertificate decides: when some target's inventory item
records a deployed serial (lastDeployedSerial, written only once a target was verified
serving it) other than ACM's current one, ACM holds a newer serial than that target has, the
renewal has happened (perhaps after Health sent the notice) and it is rolled out exactly as a
renewal (claim, duplicates and all). Otherwise (every target records ACM's serial or none, no
target, or the certificate is no longer ISSUED) the decision is EXPIRY_NOTICE: nothing is
exported or installed, Notify says when it expires and which targets hold it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rollout_core import ports
from rollout_core.contracts import ValidateResult
from rollout_core.domain.errors import InvalidSerial, RolloutError
from rollout_core.domain.events import RequestKind, RolloutRequest, parse_event
from rollout_core.domain.expiry import days_left
from rollout_core.domain.managed import MANAGED_TAG_KEY, CertificateNotManaged, unmanaged_reason
from rollout_core.domain.serials import serials_equal
from rollout_core.models import Decision, TargetOutcome
from rollout_core.observability import logger
from rollout_core.settings import ValidateSettings


class CertificateNotFound(RolloutError):
    """The event names a certificate ACM does not have (in this account and region)."""


class CertificateNotPrivate(RolloutError):
    """Only PRIVATE certificates (issued through AWS Private CA) can be exported and rolled out."""


class CertificateNotIssued(RolloutError):
    """The certificate is not ISSUED (expired, revoked, inactive, failed, pending)."""


class TooManyTargets(RolloutError):
    """More targets than one execution's history can hold (Step Functions keeps at most 25,000
    history events per execution; each target costs 24 on the happy path, more with retries
    or a rollback: BENCHMARKS.md). Refused up front, with a notification, rather than failing
    half-way without one."""


def _verified_on(state: ports.DeploymentState, serial: str) -> bool:
    """True when the target was last verified serving ``serial``, compared as integers
    (DESIGN.md: serials are integers; an unparseable recorded serial is not this one)."""
    if state.last_outcome != TargetOutcome.VERIFIED or state.last_deployed_serial is None:
        return False
    try:
        return serials_equal(state.last_deployed_serial, serial)
    except InvalidSerial:
        return False


def _holds_another_serial(state: ports.DeploymentState, serial: str) -> bool:
    """True when the target records a deployed serial that is not ``serial`` (compared as
    integers; an unparseable recorded serial is another one); False when it records none."""
    if state.last_deployed_serial is None:
        return False
    try:
        return not serials_equal(state.last_deployed_serial, serial)
    except InvalidSerial:
        return True


def expiry_notice(cert: ports.CertificateDescription, targets: list[ports.DeploymentState], base: dict[str, Any],
                  days_to_expiry: int | None) -> ValidateResult | None:
    """The EXPIRY_NOTICE result for an expiry notice about ``cert`` with inventory ``targets``, or
    None when ACM holds a serial newer than one a target records (then it is a rollout as for a
    renewal). Rule: the module docstring. ``targetIds``: every target of the certificate, in
    inventory order (none records a newer serial; the notification lists them)."""
    if cert.status == "ISSUED" and cert.serial and any(_holds_another_serial(t, cert.serial) for t in targets):
        return None
    unrecorded = [t.target_id for t in targets if t.last_deployed_serial is None]
    reason = f"ACM status {cert.status}" if cert.status != "ISSUED" else None
    if unrecorded:
        reason = "; ".join(filter(None, [reason, f"{len(unrecorded)} of {len(targets)} targets record no deployed serial"]))
    logger.warning("expiry notice: ACM holds no newer serial, nothing to install",
                   extra={"certificate_arn": cert.arn, "serial": cert.serial, "days_to_expiry": days_to_expiry})
    return ValidateResult(decision=Decision.EXPIRY_NOTICE, serial=cert.serial, targetIds=[t.target_id for t in targets],
                          daysToExpiry=days_to_expiry, reason=reason, **base)


def execution_name(execution_arn: str) -> str:
    """The execution's name, the last segment of its ARN; it is the rollout id."""
    return execution_arn.rsplit(":", 1)[-1]


def sibling_execution_arn(execution_arn: str, rollout_id: str) -> str:
    """The ARN of execution ``rollout_id`` of the same state machine as ``execution_arn``."""
    return f"{execution_arn.rsplit(':', 1)[0]}:{rollout_id}"


ENDED_UNFINISHED = frozenset({"ABORTED", "TIMED_OUT"})


def unfinished_claim(holder_arn: str, *, executions: ports.Executions, records: ports.RolloutRecords) -> str | None:
    """Why the claim of execution ``holder_arn`` no longer stands (its status, e.g. "ABORTED"),
    or None when it stands (running, SUCCEEDED, FAILED after recording target outcomes, or
    unknown to Step Functions). Rule: the module docstring."""
    holder = executions.describe(holder_arn)
    if holder is None:
        return None
    if holder.status in ENDED_UNFINISHED:
        return holder.status
    if holder.status == "FAILED" and not records.list(execution_name(holder_arn)):
        return "FAILED before any target outcome was recorded"
    return None


def claim_serial(certificate_arn: str, serial: str, execution_arn: str, *, claims: ports.RolloutClaims,
                 executions: ports.Executions, records: ports.RolloutRecords) -> str:
    """Claim (certificate ARN, serial) for this execution; the rollout id holding the claim. A
    claim held by an execution that did not finish its rollout (unfinished_claim) is released
    and claimed again. Raises what the ports raise (AwsRequestInProgress while in progress)."""
    rollout_id = execution_name(execution_arn)
    claimed_by = claims.claim(certificate_arn, serial, rollout_id)
    if claimed_by == rollout_id:
        return claimed_by
    why = unfinished_claim(sibling_execution_arn(execution_arn, claimed_by), executions=executions, records=records)
    if why is None:
        return claimed_by
    logger.warning("the claiming execution did not finish its rollout: claiming the serial again",
                   extra={"certificate_arn": certificate_arn, "serial": serial, "previous_claim": claimed_by,
                          "previous_end": why})
    claims.release(certificate_arn, serial, claimed_by)
    return claims.claim(certificate_arn, serial, rollout_id)


def described_certificate(certificate_arn: str, *, certificates: ports.Certificates,
                          settings: ValidateSettings) -> ports.CertificateDescription:
    """DescribeCertificate of ``certificate_arn``, checked to be PRIVATE and managed by this
    deployment (before anything else is decided or exported: IAM would deny the export,
    domain/managed.py). Raises CertificateNotFound, CertificateNotPrivate, CertificateNotManaged,
    or what the port raises (named AwsErrors)."""
    try:
        cert = certificates.describe(certificate_arn)
    except ports.CertificateNotFound as e:
        raise CertificateNotFound(str(e)) from None
    if cert.type != "PRIVATE":
        raise CertificateNotPrivate(f"{cert.arn} is {cert.type or 'of unknown type'}, not PRIVATE: "
                                    "only private certificates can be exported")
    not_managed = unmanaged_reason(certificates.tags(cert.arn), settings.managed_certificate_tag)
    if not_managed is not None:
        raise CertificateNotManaged(f"{cert.arn} is not managed by this deployment: {not_managed} "
                                    f"(tag it {MANAGED_TAG_KEY}={settings.managed_certificate_tag})")
    return cert


def check_target_count(certificate_arn: str, count: int, settings: ValidateSettings) -> None:
    """Raise TooManyTargets when ``count`` targets exceed MaxTargetsPerRollout (the class says why)."""
    if count > settings.max_targets_per_rollout:
        raise TooManyTargets(
            f"{certificate_arn} has {count} targets; one rollout handles at most "
            f"{settings.max_targets_per_rollout} (MaxTargetsPerRollout; Step Functions' 25,000 history events "
            "per execution). Split the certificate's targets across certificates, or raise the parameter "
            "after reading BENCHMARKS.md.")


def validate_event(raw_event: Any, execution_arn: str, *, region: str, account_id: str,
                   settings: ValidateSettings, certificates: ports.Certificates, inventory: ports.Inventory,
                   claims: ports.RolloutClaims, executions: ports.Executions, records: ports.RolloutRecords,
                   now: datetime | None = None) -> ValidateResult:
    """Decide what to do with ``raw_event`` (an EventBridge event or a manual request).

    Returns a ValidateResult with decision ROLLOUT, ALREADY_DEPLOYED, RENEWAL_FAILED, NO_TARGETS or
    EXPIRY_NOTICE (an expiry notice while ACM holds no newer serial: module docstring).
    Raises (the execution then ends REJECTED, with the error's name in the history):
      MalformedEvent, UnsupportedEvent, MissingCertificateArn, ForeignCertificate (domain.events),
      CertificateNotFound, CertificateNotPrivate, CertificateNotManaged (domain.managed: not tagged
      acm-cert-rollout=<ManagedCertificateTag>, checked before any other decision), CertificateNotIssued;
      named AwsErrors (transient ones are retried by the state machine).
    Ports: ``certificates`` (DescribeCertificate, ListTagsForCertificate), ``inventory`` (the certificate's targets),
    ``claims`` (the idempotent claim on (certificate ARN, serial)), ``executions`` and
    ``records`` (did the claiming execution finish its rollout: module docstring).
    """
    now = now or datetime.now(UTC)
    rollout_id = execution_name(execution_arn)
    request: RolloutRequest = parse_event(raw_event, region=region, account_id=account_id)
    cert = described_certificate(request.certificate_arn, certificates=certificates, settings=settings)
    # SSM reports delivery and execution time-outs itself; the task's own timeout is the safety
    # net for a lost status event: delivery deadline + execution deadline + a margin.
    base: dict[str, Any] = {"certificateArn": cert.arn, "rolloutId": rollout_id, "domainName": cert.domain_name,
            "maxConcurrency": settings.max_concurrency,
            "taskTimeoutSeconds": 2 * max(30, settings.command_timeout_seconds) + 60,
            "notAfter": cert.not_after}
    days_to_expiry = request.days_to_expiry
    if days_to_expiry is None and cert.not_after is not None:
        days_to_expiry = days_left(cert.not_after, now)
    if request.kind in (RequestKind.RENEWAL_FAILED, RequestKind.RENEWAL_ACTION_REQUIRED):
        # ACM's own RenewalStatusReason first: an event's prose is never the basis of a decision.
        reason = cert.renewal_status_reason or request.reason or "renewal failed"
        logger.warning("renewal did not complete", extra={"certificate_arn": cert.arn, "reason": reason})
        return ValidateResult(decision=Decision.RENEWAL_FAILED, serial=cert.serial, reason=reason,
                              daysToExpiry=days_to_expiry, **base)
    targets: list[ports.DeploymentState] | None = None
    if request.kind is RequestKind.EXPIRY_NOTICE:
        targets = inventory.deployment_states(cert.arn)
        notice = expiry_notice(cert, targets, base, days_to_expiry)
        if notice is not None:
            return notice
        # ACM already holds a serial newer than a target's: the renewal happened, roll it out as one.
        logger.info("expiry notice, but ACM holds a newer serial than a target records: rollout",
                    extra={"certificate_arn": cert.arn, "serial": cert.serial})
    if cert.status != "ISSUED" or not cert.serial:
        raise CertificateNotIssued(f"{cert.arn} is {cert.status}, not ISSUED: nothing to roll out")

    if targets is None:
        targets = inventory.deployment_states(cert.arn)
    if not targets:
        logger.warning("certificate has no targets in the inventory", extra={"certificate_arn": cert.arn})
        return ValidateResult(decision=Decision.NO_TARGETS, serial=cert.serial, daysToExpiry=days_to_expiry,
                              reason="no targets in the inventory", **base)
    target_ids = [t.target_id for t in targets]
    check_target_count(cert.arn, len(target_ids), settings)
    if request.force:
        logger.info("manual redeploy requested", extra={"certificate_arn": cert.arn, "serial": cert.serial})
        return ValidateResult(decision=Decision.ROLLOUT, serial=cert.serial, targetIds=target_ids,
                              daysToExpiry=days_to_expiry, reason=request.reason, **base)

    claimed_by = claim_serial(cert.arn, cert.serial, execution_arn, claims=claims, executions=executions,
                              records=records)
    if claimed_by != rollout_id:
        logger.info("duplicate event: this serial is already claimed by another rollout",
                    extra={"certificate_arn": cert.arn, "serial": cert.serial, "duplicate_of": claimed_by})
        return ValidateResult(decision=Decision.ALREADY_DEPLOYED, serial=cert.serial, targetIds=[],
                              duplicateOf=claimed_by, daysToExpiry=days_to_expiry, **base)
    if all(_verified_on(t, cert.serial) for t in targets):
        return ValidateResult(decision=Decision.ALREADY_DEPLOYED, serial=cert.serial, targetIds=[],
                              reason="every target already serves this serial", daysToExpiry=days_to_expiry,
                              **base)
    return ValidateResult(decision=Decision.ROLLOUT, serial=cert.serial, targetIds=target_ids,
                          daysToExpiry=days_to_expiry, **base)
