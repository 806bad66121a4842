"""The idempotent claim on (certificate ARN, serial): Powertools Idempotency on the
idempotency DynamoDB table (port rollout_core/ports.py RolloutClaims)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

IN_PROGRESS = "in-progress"


class PowertoolsClaims:
    """The first caller's rolloutId is stored and returned to every later caller for the same
    (certificate ARN, serial) until the record expires, ``ttl_seconds`` seconds after the claim."""

    def __init__(self, table_name: str, ttl_seconds: int) -> None:
        if ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be at least 1 second, got {ttl_seconds}")
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        persistence = DynamoDBPersistenceLayer(table_name=table_name)
        config = IdempotencyConfig(event_key_jmespath="[certificateArn, serial]",
                                   expires_after_seconds=ttl_seconds, raise_on_no_idempotency_key=True)

        # Powertools' idempotent_function carries no type hints: the claim's type is restated below.
        @idempotent_function(data_keyword_argument="claim", persistence_store=persistence,  # type: ignore[untyped-decorator]
                             config=config)
        def claim_rollout(claim: dict[str, str]) -> dict[str, str]:
            return {"rolloutId": claim["rolloutId"], "claimedAt": datetime.now(UTC).isoformat()}

        self._claim: Callable[..., dict[str, str]] = claim_rollout

    def claim(self, certificate_arn: str, serial: str, rollout_id: str) -> str:
        """Claim the pair for ``rollout_id``; the rollout id holding the claim, or "in-progress"
        while another caller's claim is being written. Raises Powertools' persistence errors."""
        try:
            claimed = self._claim(claim={"certificateArn": certificate_arn, "serial": serial,
                                         "rolloutId": rollout_id})
        except IdempotencyAlreadyInProgressError:
            return IN_PROGRESS
        return str(claimed["rolloutId"])
