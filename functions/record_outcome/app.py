"""RecordTargetOutcome: VERIFIED, ROLLED_BACK or FAILED with a reason, recorded in DynamoDB."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoInventory, DynamoRolloutRecords
from rollout_core.adapters.tls import SocketTlsProbe
from rollout_core.contracts import OutcomeSummary, RecordInput
from rollout_core.logic.outcome import record_outcome
from rollout_core.observability import logger, tracer
from rollout_core.settings import RecordSettings, load_settings

SETTINGS = load_settings(RecordSettings)
INVENTORY = DynamoInventory(SETTINGS.inventory_table)
RECORDS = DynamoRolloutRecords(SETTINGS.rollout_table)
PROBE = SocketTlsProbe()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """RecordInput (the whole iteration state) in, OutcomeSummary out ($.outcome)."""
    r = RecordInput.model_validate(event)
    summary: OutcomeSummary = record_outcome(r.target, settings=SETTINGS, inventory=INVENTORY, records=RECORDS,
                                             probe=PROBE).summary()
    return summary.model_dump(mode="json")
