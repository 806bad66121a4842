"""ValidateEvent: what does this event ask for, and has it been done already?

Rules (DESIGN.md "Triggers"): the decision rests on DescribeCertificate, never on an event's
prose; a (certificate ARN, serial) pair is rolled out once (events arrive at least once,
Health and ACM both announce one renewal); a manual request with force=true rolls out again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from rollout_core.adapters import acm, dynamo
from rollout_core.contracts import ValidateResult
from rollout_core.domain.errors import RolloutError
from rollout_core.domain.events import RequestKind, RolloutRequest, parse_event
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


@cache
def _claimer(table_name: str, ttl_seconds: int):  # type: ignore[no-untyped-def]
    """The idempotent claim on (certificate ARN, serial), Powertools Idempotency on DynamoDB.

    The first caller's rolloutId is stored and returned to every later caller for the same
    pair until the record expires (ttl_seconds).
    """
    persistence = DynamoDBPersistenceLayer(table_name=table_name)
    config = IdempotencyConfig(event_key_jmespath="[certificateArn, serial]",
                               expires_after_seconds=ttl_seconds, raise_on_no_idempotency_key=True)

    @idempotent_function(data_keyword_argument="claim", persistence_store=persistence, config=config)
    def claim_rollout(claim: dict[str, str]) -> dict[str, str]:
        return {"rolloutId": claim["rolloutId"], "claimedAt": datetime.now(UTC).isoformat()}

    return claim_rollout


def execution_name(execution_arn: str) -> str:
    """The execution's name, the last segment of its ARN; it is the rollout id."""
    return execution_arn.rsplit(":", 1)[-1]


def validate_event(raw_event: Any, execution_arn: str, *, region: str, account_id: str,
                   settings: ValidateSettings, now: datetime | None = None) -> ValidateResult:
    """Decide what to do with ``raw_event`` (an EventBridge event or a manual request).

    Returns a ValidateResult with decision ROLLOUT, ALREADY_DEPLOYED, RENEWAL_FAILED or NO_TARGETS.
    Raises (the execution then ends REJECTED, with the error's name in the history):
      MalformedEvent, UnsupportedEvent, MissingCertificateArn, ForeignCertificate (domain.events),
      CertificateNotFound, CertificateNotPrivate, CertificateNotIssued;
      named AwsErrors (transient ones are retried by the state machine).
    """
    now = now or datetime.now(UTC)
    rollout_id = execution_name(execution_arn)
    request: RolloutRequest = parse_event(raw_event, region=region, account_id=account_id)
    try:
        cert = acm.describe_certificate(request.certificate_arn)
    except acm.CertificateNotFound as e:
        raise CertificateNotFound(str(e)) from None
    # SSM reports delivery and execution time-outs itself; the task's own timeout is the safety
    # net for a lost status event: delivery deadline + execution deadline + a margin.
    base = {"certificateArn": cert.arn, "rolloutId": rollout_id, "domainName": cert.domain_name,
            "maxConcurrency": settings.max_concurrency,
            "taskTimeoutSeconds": 2 * max(30, settings.command_timeout_seconds) + 60}
    if cert.type != "PRIVATE":
        raise CertificateNotPrivate(f"{cert.arn} is {cert.type or 'of unknown type'}, not PRIVATE: "
                                    "only private certificates can be exported")
    days_to_expiry = request.days_to_expiry
    if days_to_expiry is None and cert.not_after is not None:
        days_to_expiry = (cert.not_after - now).days
    if request.kind in (RequestKind.RENEWAL_FAILED, RequestKind.RENEWAL_ACTION_REQUIRED):
        # ACM's own RenewalStatusReason first: an event's prose is never the basis of a decision.
        reason = cert.renewal_status_reason or request.reason or "renewal failed"
        logger.warning("renewal did not complete", extra={"certificate_arn": cert.arn, "reason": reason})
        return ValidateResult(decision=Decision.RENEWAL_FAILED, serial=cert.serial, reason=reason,
                              daysToExpiry=days_to_expiry, **base)
    if cert.status != "ISSUED" or not cert.serial:
        raise CertificateNotIssued(f"{cert.arn} is {cert.status}, not ISSUED: nothing to roll out")

    targets = dynamo.list_target_states(settings.inventory_table, cert.arn)
    if not targets:
        logger.warning("certificate has no targets in the inventory", extra={"certificate_arn": cert.arn})
        return ValidateResult(decision=Decision.NO_TARGETS, serial=cert.serial, daysToExpiry=days_to_expiry,
                              reason="no targets in the inventory", **base)
    target_ids = [t["targetId"] for t in targets]
    if len(target_ids) > settings.max_targets_per_rollout:
        raise TooManyTargets(
            f"{cert.arn} has {len(target_ids)} targets; one rollout handles at most "
            f"{settings.max_targets_per_rollout} (MaxTargetsPerRollout; Step Functions' 25,000 history events "
            "per execution). Split the certificate's targets across certificates, or raise the parameter "
            "after reading BENCHMARKS.md.")
    if request.force:
        logger.info("manual redeploy requested", extra={"certificate_arn": cert.arn, "serial": cert.serial})
        return ValidateResult(decision=Decision.ROLLOUT, serial=cert.serial, targetIds=target_ids,
                              daysToExpiry=days_to_expiry, reason=request.reason, **base)

    claim = _claimer(settings.idempotency_table, settings.idempotency_ttl_seconds)
    try:
        claimed = claim(claim={"certificateArn": cert.arn, "serial": cert.serial, "rolloutId": rollout_id})
    except IdempotencyAlreadyInProgressError:
        claimed = {"rolloutId": "in-progress"}
    if claimed["rolloutId"] != rollout_id:
        logger.info("duplicate event: this serial is already claimed by another rollout",
                    extra={"certificate_arn": cert.arn, "serial": cert.serial, "duplicate_of": claimed["rolloutId"]})
        return ValidateResult(decision=Decision.ALREADY_DEPLOYED, serial=cert.serial, targetIds=[],
                              duplicateOf=claimed["rolloutId"], daysToExpiry=days_to_expiry, **base)
    if all(t.get("lastDeployedSerial") == cert.serial and t.get("lastOutcome") == TargetOutcome.VERIFIED
           for t in targets):
        return ValidateResult(decision=Decision.ALREADY_DEPLOYED, serial=cert.serial, targetIds=[],
                              reason="every target already serves this serial", daysToExpiry=days_to_expiry,
                              **base)
    return ValidateResult(decision=Decision.ROLLOUT, serial=cert.serial, targetIds=target_ids,
                          daysToExpiry=days_to_expiry, **base)
