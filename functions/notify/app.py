"""Notify: deletes the rollout's staged bundle; one SNS message with every target's outcome;
decides the rollout's outcome."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoRolloutRecords
from rollout_core.adapters.secrets import SecretsManagerStaging
from rollout_core.adapters.sns import SnsNotifications
from rollout_core.contracts import NotifyInput, NotifyResult
from rollout_core.logic.notify import notify
from rollout_core.observability import logger, metrics, tracer
from rollout_core.settings import NotifySettings, load_settings

SETTINGS = load_settings(NotifySettings)
RECORDS = DynamoRolloutRecords(SETTINGS.rollout_table)
NOTIFICATIONS = SnsNotifications(SETTINGS.topic_arn)
STAGING = SecretsManagerStaging()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """NotifyInput ($.rollout) in, NotifyResult out ($.notification)."""
    r = NotifyInput.model_validate(event)
    result: NotifyResult = notify(r.rollout, records=RECORDS, notifications=NOTIFICATIONS, staging=STAGING,
                                  secret_prefix=SETTINGS.secret_prefix)
    return result.model_dump(mode="json")
