"""NotifyAbnormalEnd: one SNS message for an execution that ended FAILED, TIMED_OUT or ABORTED
without Notify having reported it (EventBridge: Step Functions Execution Status Change)."""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoRolloutRecords
from rollout_core.adapters.sns import SnsNotifications
from rollout_core.adapters.stepfunctions import StepFunctionsExecutions
from rollout_core.contracts import AbnormalEndResult, ExecutionStatusChange
from rollout_core.logic.abnormal_end import AbnormalEnd, notify_abnormal_end
from rollout_core.observability import logger, metrics, tracer
from rollout_core.settings import AbnormalEndSettings, load_settings

SETTINGS = load_settings(AbnormalEndSettings)
EXECUTIONS = StepFunctionsExecutions()
RECORDS = DynamoRolloutRecords(SETTINGS.rollout_table)
NOTIFICATIONS = SnsNotifications(SETTINGS.topic_arn)
# What else must happen when an execution ends abnormally (e.g. releasing the certificate's
# lease, issue 10 item 1): idempotent callbacks, run before the notification.
ON_ABNORMAL_END: list[Callable[[AbnormalEnd], None]] = []


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ExecutionStatusChange (EventBridge event) in, AbnormalEndResult out (in the log)."""
    change = ExecutionStatusChange.model_validate(event)
    result: AbnormalEndResult = notify_abnormal_end(
        change, state_machine_arn=SETTINGS.state_machine_arn, executions=EXECUTIONS, records=RECORDS,
        notifications=NOTIFICATIONS, on_abnormal_end=ON_ABNORMAL_END)
    return result.model_dump(mode="json")
