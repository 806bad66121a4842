"""ExportCertificate: export, check key and chain, stage in the rollout's own secret (readable
only from the targets' nodes), sweep ended rollouts' staged bundles; references out."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.acm import AcmCertificates
from rollout_core.adapters.dynamo import DynamoInventory
from rollout_core.adapters.secrets import SecretsManagerKeystorePasswords, SecretsManagerStaging
from rollout_core.adapters.stepfunctions import StepFunctionsExecutions
from rollout_core.contracts import ExportInput, ExportResult
from rollout_core.logic.export import export_certificate
from rollout_core.observability import logger, tracer
from rollout_core.settings import ExportSettings, load_settings

SETTINGS = load_settings(ExportSettings)
CERTIFICATES = AcmCertificates()
STAGING = SecretsManagerStaging()
PASSWORDS = SecretsManagerKeystorePasswords()
INVENTORY = DynamoInventory(SETTINGS.inventory_table)
EXECUTIONS = StepFunctionsExecutions()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ExportInput in, ExportResult out ($.export)."""
    request = ExportInput.model_validate(event)
    result: ExportResult = export_certificate(
        request.certificateArn, request.serial, request.executionArn, request.targetIds, settings=SETTINGS,
        certificates=CERTIFICATES, staging=STAGING, inventory=INVENTORY, passwords=PASSWORDS, executions=EXECUTIONS)
    return result.model_dump(mode="json")
