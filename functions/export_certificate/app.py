"""ExportCertificate: export, check key and chain, stage in Secrets Manager; references out."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.acm import AcmCertificates
from rollout_core.adapters.secrets import SecretsManagerStaging
from rollout_core.contracts import ExportInput, ExportResult
from rollout_core.logic.export import export_certificate
from rollout_core.observability import logger, metrics, tracer
from rollout_core.settings import ExportSettings, load_settings

SETTINGS = load_settings(ExportSettings)
CERTIFICATES = AcmCertificates()
STAGING = SecretsManagerStaging()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """ExportInput in, ExportResult out ($.export)."""
    request = ExportInput.model_validate(event)
    result: ExportResult = export_certificate(request.certificateArn, request.serial, request.rolloutId,
                                              settings=SETTINGS, certificates=CERTIFICATES, staging=STAGING)
    return result.model_dump(mode="json")
