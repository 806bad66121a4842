"""AcquireLease / ReleaseLease: the certificate's rollout lease (one writer per certificate,
the newest request wins: logic/lease.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.acm import AcmCertificates
from rollout_core.adapters.leases import DynamoLeases
from rollout_core.contracts import LeaseInput
from rollout_core.logic.lease import acquire_lease, release_lease
from rollout_core.observability import logger, tracer
from rollout_core.settings import LeaseSettings, load_settings

SETTINGS = load_settings(LeaseSettings)
LEASES = DynamoLeases(SETTINGS.rollout_table)
CERTIFICATES = AcmCertificates()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """LeaseInput in; LeaseResult ($.lease) for acquire, LeaseReleaseResult ($.leaseRelease) for release."""
    request = LeaseInput.model_validate(event)
    if request.operation == "release":
        return release_lease(request, leases=LEASES).model_dump(mode="json")
    return acquire_lease(request, settings=SETTINGS, leases=LEASES, certificates=CERTIFICATES).model_dump(mode="json")
