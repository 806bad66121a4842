"""One rollout's staged bundle: how it is created, who may read it, when it goes (issue 11, item 1).

Lifetime (domain/staging.py has the name and the policy):

1. ExportCertificate ``stage_rollout_bundle``: CreateSecret WITHOUT a value (tagged with the
   rollout's execution ARN), PutResourcePolicy (Deny GetSecretValue unless from the rollout's
   target nodes), then PutSecretValue. In that order, every time (a retried export re-applies the
   policy before the new value), so no moment exists where the key is readable without the policy.
2. Notify (``delete_rollout_bundle``) deletes it before publishing; NotifyAbnormalEnd (an
   execution FAILED, TIMED_OUT or ABORTED) deletes it too. ForceDeleteWithoutRecovery: no
   recovery window in which the key still exists.
3. ExportCertificate ``sweep_ended_rollouts``: every staged secret whose rollout has ended
   (DescribeExecution on its tagged execution ARN: not RUNNING, or unknown to Step Functions) is
   deleted; so a rollout whose Notify and NotifyAbnormalEnd both never ran (a lost EventBridge
   event, a crashed Lambda) leaves its bundle only until the next export of any certificate.

Why a tag with the execution ARN and not the name: the name carries the rollout id (the
execution name) but not the state machine's name; the tag names the exact execution to ask
about, set atomically by CreateSecret, and ListSecrets returns tags with each entry (one call
per page, no DescribeSecret per secret).
"""

from __future__ import annotations

from collections.abc import Iterable

from rollout_core import ports
from rollout_core.adapters.errors import AwsError
from rollout_core.domain.staging import (
    EXECUTION_TAG,
    staged_rollout_id,
    staged_secret_name,
    staged_secret_policy,
    staged_secret_prefix,
)
from rollout_core.observability import logger

MANAGED_BY = {"managed-by": "acm-cert-rollout"}
# At most this many DescribeExecution calls per sweep: an export's run time stays bounded; what is
# left is swept by the next export (staged secrets of ended rollouts are rare: Notify deletes them).
SWEEP_MAX_DESCRIBES = 50


def stage_rollout_bundle(document: str, *, secret_prefix: str, certificate_arn: str, execution_arn: str,
                         instance_ids: Iterable[str], kms_key_id: str, staging: ports.BundleStaging,
                         ) -> ports.StagedSecret:
    """Stage ``document`` (the bundle JSON: key material) in the rollout's own secret.

    ``execution_arn``: ``arn:<partition>:states:<region>:<account>:execution:<machine>:<rollout id>``
    (the rollout id is its last part; partition, region and account name the nodes' ARNs).
    ``instance_ids``: the managed nodes of the rollout's targets (i-/mi-).
    Order: CreateSecret without a value, PutResourcePolicy, PutSecretValue (module docstring).
    Returns the secret's references. Raises InvalidStagingName, StagingPolicyTooLarge,
    ValueError (an execution ARN that is not one, a node id that is not i-/mi-), a named AwsError.
    """
    parts = execution_arn.split(":")
    if len(parts) != 8 or parts[0] != "arn" or parts[2] != "states" or parts[5] != "execution":
        raise ValueError(f"{execution_arn!r} is not a Step Functions execution ARN")
    partition, region, account, rollout_id = parts[1], parts[3], parts[4], parts[7]
    name = staged_secret_name(secret_prefix, certificate_arn, rollout_id)
    policy = staged_secret_policy(instance_ids, partition=partition, region=region, account=account)
    staging.create_empty(name, kms_key_id=kms_key_id, description=f"acm-cert-rollout bundle of {certificate_arn}, "
                         f"rollout {rollout_id}; deleted when the rollout ends",
                         tags={**MANAGED_BY, EXECUTION_TAG: execution_arn})
    staging.put_policy(name, policy)
    return staging.put_value(name, document)


def delete_rollout_bundle(secret_prefix: str, certificate_arn: str, rollout_id: str, *,
                          staging: ports.BundleStaging) -> bool:
    """Delete the rollout's staged secret (ForceDeleteWithoutRecovery). True when it existed.
    Raises InvalidStagingName (parts that never made a staged name), a named AwsError."""
    deleted = staging.delete(staged_secret_name(secret_prefix, certificate_arn, rollout_id))
    logger.info("staged bundle deleted" if deleted else "no staged bundle to delete",
                extra={"certificate_arn": certificate_arn, "rollout_id": rollout_id})
    return deleted


def sweep_ended_rollouts(secret_prefix: str, *, current_execution_arn: str, staging: ports.BundleStaging,
                         executions: ports.Executions) -> list[str]:
    """Delete the staged secrets of rollouts that have ended; returns the names deleted.

    A staged secret's rollout has ended when DescribeExecution of its EXECUTION_TAG says anything
    but RUNNING, or Step Functions has no such execution. The current execution's own secret, and a
    secret without the tag (never created by this product: left alone, logged), are kept. At most
    SWEEP_MAX_DESCRIBES executions are asked about. Best effort: an AwsError is logged, never
    raised (the export must not fail because an old bundle could not be swept; the next one retries).
    """
    deleted: list[str] = []
    try:
        entries = staging.list_staged(staged_secret_prefix(secret_prefix))
        described = 0
        for entry in entries:
            if entry.execution_arn == current_execution_arn or staged_rollout_id(secret_prefix, entry.name) is None:
                continue
            if entry.execution_arn is None:
                logger.warning("staged secret without its execution tag left alone", extra={"secret": entry.name})
                continue
            if described == SWEEP_MAX_DESCRIBES:
                logger.info("sweep stopped at its bound; the next export continues",
                            extra={"bound": SWEEP_MAX_DESCRIBES})
                break
            described += 1
            execution = executions.describe(entry.execution_arn)
            if execution is not None and execution.status == "RUNNING":
                continue
            if staging.delete(entry.name):
                deleted.append(entry.name)
            logger.info("staged bundle of an ended rollout swept",
                        extra={"secret": entry.name, "execution_arn": entry.execution_arn,
                               "status": execution.status if execution is not None else "unknown to Step Functions"})
    except AwsError as e:
        logger.warning("sweep of ended rollouts' staged bundles failed", extra={"error": type(e).__name__,
                                                                                 "code": e.code})
    return deleted
