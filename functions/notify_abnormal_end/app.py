"""NotifyAbnormalEnd: one SNS message for an execution that ended FAILED, TIMED_OUT or ABORTED
without Notify having reported it (EventBridge: Step Functions Execution Status Change)."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoRolloutRecords
from rollout_core.adapters.leases import DynamoLeases
from rollout_core.adapters.secrets import SecretsManagerStaging
from rollout_core.adapters.sns import SnsNotifications
from rollout_core.adapters.stepfunctions import StepFunctionsExecutions
from rollout_core.contracts import AbnormalEndResult, ExecutionStatusChange
from rollout_core.logic.abnormal_end import AbnormalEnd, notify_abnormal_end
from rollout_core.logic.lease import release_for_execution
from rollout_core.logic.staging import delete_rollout_bundle
from rollout_core.observability import logger, tracer
from rollout_core.settings import AbnormalEndSettings, load_settings

SETTINGS = load_settings(AbnormalEndSettings)
EXECUTIONS = StepFunctionsExecutions()
RECORDS = DynamoRolloutRecords(SETTINGS.rollout_table)
NOTIFICATIONS = SnsNotifications(SETTINGS.topic_arn)
LEASES = DynamoLeases(SETTINGS.rollout_table)
STAGING = SecretsManagerStaging()


def release_lease(end: AbnormalEnd) -> None:
    """The certificate's lease, if this execution still holds it (it never reached ReleaseLease):
    released now rather than after LeaseSeconds (logic/lease.py release_for_execution; idempotent)."""
    if end.certificate_arn:
        release_for_execution(end.execution_arn, end.certificate_arn, leases=LEASES)


def delete_staged_bundle(end: AbnormalEnd) -> None:
    """The rollout's staged bundle, if ExportCertificate made one: deleted now (logic/staging.py;
    idempotent). The certificate ARN is the one the execution's input names, as ValidateEvent
    reads it; without one nothing was exported."""
    if end.certificate_arn:
        delete_rollout_bundle(SETTINGS.secret_prefix, end.certificate_arn, end.rollout_id, staging=STAGING)


# What else must happen when an execution ends abnormally: idempotent callbacks, run before the
# notification.
ON_ABNORMAL_END: list[Callable[[AbnormalEnd], None]] = [release_lease, delete_staged_bundle]


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ExecutionStatusChange (EventBridge event) in, AbnormalEndResult out (in the log)."""
    change = ExecutionStatusChange.model_validate(event)
    result: AbnormalEndResult = notify_abnormal_end(
        change, state_machine_arn=SETTINGS.state_machine_arn, executions=EXECUTIONS, records=RECORDS,
        notifications=NOTIFICATIONS, on_abnormal_end=ON_ABNORMAL_END)
    return result.model_dump(mode="json")
