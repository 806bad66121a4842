"""ValidateEvent: which certificate, which serial, which targets; claim the rollout once."""

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.acm import AcmCertificates
from rollout_core.adapters.claims import PowertoolsClaims
from rollout_core.adapters.dynamo import DynamoInventory, DynamoRolloutRecords
from rollout_core.adapters.stepfunctions import StepFunctionsExecutions
from rollout_core.contracts import ValidateInput, ValidateResult
from rollout_core.logic.validate import validate_event
from rollout_core.observability import logger, tracer
from rollout_core.settings import ValidateSettings, load_settings

SETTINGS = load_settings(ValidateSettings)
CERTIFICATES = AcmCertificates()
INVENTORY = DynamoInventory(SETTINGS.inventory_table)
CLAIMS = PowertoolsClaims(SETTINGS.idempotency_table, SETTINGS.idempotency_ttl_seconds)
EXECUTIONS = StepFunctionsExecutions()
RECORDS = DynamoRolloutRecords(SETTINGS.rollout_table)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ValidateInput in, ValidateResult out ($.rollout)."""
    request = ValidateInput.model_validate(event)
    CLAIMS.register_lambda_context(context)  # an in-progress claim expires with this invocation
    account_id = context.invoked_function_arn.split(":")[4]
    result: ValidateResult = validate_event(request.event, request.executionArn, region=os.environ["AWS_REGION"],
                                            account_id=account_id, settings=SETTINGS, certificates=CERTIFICATES,
                                            inventory=INVENTORY, claims=CLAIMS,
                                            executions=EXECUTIONS, records=RECORDS)
    return result.model_dump(mode="json")
