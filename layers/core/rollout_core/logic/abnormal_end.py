"""NotifyAbnormalEnd: every execution of the rollout state machine that ends other than SUCCEEDED
produces exactly one notification naming the execution, the certificate and why (DESIGN.md
"Every execution end, normal or not, is notified once"; issue 10, item 7).

Most ends are notified by the Notify task itself. What Notify cannot see: an execution stopped
(StopExecution: ABORTED), timed out (TIMED_OUT), failed by Step Functions itself (States.Runtime,
the 25,000-event history quota), or failed because Notify could not publish (NotificationFailed).
An EventBridge rule on the state machine's own "Step Functions Execution Status Change" events
(status FAILED, TIMED_OUT, ABORTED; template.yaml NotifyAbnormalEndFunction) invokes this.

Exactly once: Notify writes a notification marker in the rollout table after publishing
(logic/notify.py); here the marker is claimed with a conditional write before publishing, so an
end Notify already reported, or a redelivered event (EventBridge and Lambda's asynchronous
invocation both deliver at least once), publishes nothing. A publish that fails removes the
claim and raises, so Lambda's retry publishes. The execution is read with DescribeExecution
(its status, input, error and cause), not only from the event.

Hook for the per-certificate lease: ``on_abnormal_end`` callbacks run for every such end
(before the notification, whether or not Notify already notified); they must be idempotent.
A callback's error is logged, the notification still goes out, then AbnormalEndHookFailed is
raised so Lambda retries the invocation (the marker keeps the retry from publishing again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rollout_core import ports
from rollout_core.adapters.errors import AwsError
from rollout_core.contracts import AbnormalEndResult, ExecutionStatusChange
from rollout_core.domain.errors import RolloutError
from rollout_core.domain.events import parse_event
from rollout_core.logic.validate import execution_name
from rollout_core.observability import logger

NOTIFIED_BY = "NotifyAbnormalEnd"
ABNORMAL_STATUSES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
CAUSE_MAX_CHARS = 1000
_ACM_ARN = re.compile(r"arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+")

WHY = {
    "ABORTED": "the execution was stopped (StopExecution) before it finished",
    "TIMED_OUT": "the execution ran longer than the state machine allows (TimeoutSeconds)",
    "FAILED": "the execution failed before the rollout's notification was published",
}


class ForeignExecution(RolloutError):
    """The status change is of another state machine's execution (the rule's pattern is wrong)."""


class AbnormalEndHookFailed(RolloutError):
    """An on_abnormal_end callback failed; the invocation is retried (the notification is not)."""


@dataclass(frozen=True)
class AbnormalEnd:
    """One execution that ended other than SUCCEEDED: what the on_abnormal_end callbacks get."""

    execution_arn: str
    rollout_id: str
    status: str  # FAILED, TIMED_OUT, ABORTED
    certificate_arn: str | None
    error: str | None
    cause: str | None


def certificate_of(execution_input: Any, execution_arn: str) -> str | None:
    """The certificate ARN an execution's input names: as ValidateEvent reads it (domain/events.py
    parse_event), else the first ACM certificate ARN in the input (a rejected event), else None."""
    parts = execution_arn.split(":")
    region, account = (parts[3], parts[4]) if len(parts) > 4 else ("", "")
    if isinstance(execution_input, dict):
        try:
            return parse_event(execution_input, region=region, account_id=account).certificate_arn
        except RolloutError:
            pass
    match = _ACM_ARN.search(json.dumps(execution_input, default=str))
    return match.group(0) if match else None


def format_abnormal_end(end: AbnormalEnd) -> tuple[str, str]:
    """(subject, body) of the notification; the subject stays within SNS's 100 characters."""
    subject = f"[EXECUTION_{end.status}] certificate rollout {end.rollout_id}"[:100]
    why = WHY.get(end.status, f"the execution ended {end.status}")
    lines = [f"Certificate rollout execution ended {end.status}",
             f"Execution:   {end.execution_arn}",
             f"Certificate: {end.certificate_arn or '- (not named by the execution input)'}",
             f"Rollout:     {end.rollout_id} (Step Functions execution name)",
             f"Why:         {why}"]
    if end.error or end.cause:
        lines.append(f"Error:       {end.error or '-'}: {(end.cause or '-')[:CAUSE_MAX_CHARS]}")
    lines += ["", "The rollout did not finish: some targets may have the new files, some not, and no",
              "per-target report was sent. See the execution history, check the targets",
              "(cert-rollout status), then redeploy: {\"certificateArn\": \"...\", \"force\": true}."]
    return subject, "\n".join(lines) + "\n"


def _run_hooks(end: AbnormalEnd, hooks: Sequence[Callable[[AbnormalEnd], None]]) -> list[str]:
    errors: list[str] = []
    for hook in hooks:
        try:
            hook(end)
        except Exception as e:  # noqa: BLE001 - every hook runs; the invocation is retried after
            logger.warning("on_abnormal_end callback failed",
                           extra={"execution_arn": end.execution_arn, "error": type(e).__name__})
            errors.append(f"{getattr(hook, '__name__', 'callback')}: {type(e).__name__}")
    return errors


def notify_abnormal_end(change: ExecutionStatusChange, *, state_machine_arn: str, executions: ports.Executions,
                        records: ports.RolloutRecords, notifications: ports.Notifications,
                        on_abnormal_end: Sequence[Callable[[AbnormalEnd], None]] = ()) -> AbnormalEndResult:
    """Notify one execution end of ``state_machine_arn`` once (module docstring).

    Returns AbnormalEndResult (published, or why not). Raises ForeignExecution (another state
    machine), a named AwsError (DescribeExecution, DynamoDB or SNS failed: Lambda retries),
    AbnormalEndHookFailed (a callback failed, after the notification).
    Ports: ``executions`` (DescribeExecution), ``records`` (the notification marker),
    ``notifications`` (the topic). ``on_abnormal_end``: the lease's release (issue 10, item 1).
    """
    detail = change.detail
    if detail.stateMachineArn != state_machine_arn:
        raise ForeignExecution(f"execution {detail.executionArn} is of state machine {detail.stateMachineArn}, "
                               f"not {state_machine_arn}")
    described = executions.describe(detail.executionArn)
    status = described.status if described is not None else detail.status
    certificate_arn = certificate_of(described.input if described is not None else None, detail.executionArn)
    if status not in ABNORMAL_STATUSES:
        logger.info("execution did not end abnormally", extra={"execution_arn": detail.executionArn, "status": status})
        return AbnormalEndResult(executionArn=detail.executionArn, status=status, certificateArn=certificate_arn,
                                 published=False)
    end = AbnormalEnd(execution_arn=detail.executionArn, rollout_id=execution_name(detail.executionArn),
                      status=status, certificate_arn=certificate_arn,
                      error=(described.error if described is not None else None) or detail.error,
                      cause=(described.cause if described is not None else None) or detail.cause)
    hook_errors = _run_hooks(end, on_abnormal_end)
    result = _publish_once(end, records=records, notifications=notifications)
    if hook_errors:
        raise AbnormalEndHookFailed(f"{end.execution_arn}: {'; '.join(hook_errors)}")
    return result


def _publish_once(end: AbnormalEnd, *, records: ports.RolloutRecords,
                  notifications: ports.Notifications) -> AbnormalEndResult:
    outcome = f"EXECUTION_{end.status}"
    base = AbnormalEndResult(executionArn=end.execution_arn, status=end.status, certificateArn=end.certificate_arn,
                             published=False)
    if not records.claim_notification(end.rollout_id, by=NOTIFIED_BY, outcome=outcome):
        marker = records.notification(end.rollout_id)
        by = marker.by if marker is not None else "unknown"
        logger.info("execution end already notified", extra={"execution_arn": end.execution_arn, "by": by})
        return base.model_copy(update={"alreadyNotifiedBy": by})
    subject, body = format_abnormal_end(end)
    try:
        message_id = notifications.publish(subject, body, {
            "outcome": outcome, "certificateArn": end.certificate_arn or "", "rolloutId": end.rollout_id,
            "executionArn": end.execution_arn})
    except AwsError:
        records.forget_notification(end.rollout_id)  # so Lambda's retry publishes
        raise
    try:
        records.mark_notified(end.rollout_id, by=NOTIFIED_BY, outcome=outcome, message_id=message_id)
    except AwsError as e:  # the claim stays: a retry publishes nothing; only the message id is missing
        logger.warning("notification marker not updated with the message id", extra={"code": e.code})
    logger.info("abnormal end notified", extra={"execution_arn": end.execution_arn, "status": end.status,
                                                 "message_id": message_id})
    return base.model_copy(update={"published": True, "messageId": message_id})
