"""The idempotent claim on (certificate ARN, serial): Powertools Idempotency on the
idempotency DynamoDB table (port rollout_core/ports.py RolloutClaims).

How a claim can no longer block a serial (issue 10, item 6):
- A transient DynamoDB failure (throttling, 5xx) while the claim is written comes out as the
  named transient AwsError the state machine's Retry of ValidateEvent already retries
  (statemachine/rollout.asl.json: AwsThrottled, AwsRequestInProgress, AwsServiceUnavailable), not
  as Powertools' IdempotencyPersistenceLayerError (which ended the execution REJECTED).
  When the failed write is the one that marks the claim COMPLETED, the in-progress record this
  call wrote is deleted first (best effort), so the retry claims again at once.
- The in-progress record expires with the Lambda invocation: the handler registers its Lambda
  context (``register_lambda_context``), so Powertools stores in_progress_expiry_timestamp =
  now + the invocation's remaining time, and a later claim overwrites an expired in-progress
  record (Powertools' conditional PutItem). Without the context an in-progress record lived as
  long as a completed one (IdempotencyTtlDays).
- A claim held in progress by another invocation (IdempotencyAlreadyInProgressError) is not a
  duplicate: it is waited for, at most until its in-progress expiry or until this invocation
  must return, then AwsRequestInProgress (retried by the state machine).
- ``release`` deletes a completed claim held by a given rollout, conditionally (logic/validate.py
  releases a claim whose execution ended without finishing its rollout).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyItemNotFoundError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import AwsError, AwsRequestInProgress, named_aws_error
from rollout_core.observability import logger

# Powertools' DynamoDBPersistenceLayer default attribute names (we keep the defaults).
KEY_ATTR, STATUS_ATTR, DATA_ATTR = "id", "status", "data"
COMPLETED = "COMPLETED"
# Time kept back for the invocation to answer after waiting for another caller's claim.
RETURN_MARGIN_SECONDS = 5.0
# Without a Lambda context (tests, tools), wait at most this long for an in-progress claim.
DEFAULT_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.5


def _persistence_error(error: IdempotencyPersistenceLayerError, operation: str) -> AwsError:
    """The named AwsError of the DynamoDB failure inside Powertools' persistence error (its
    __cause__ is the botocore error); a failure without one is permanent."""
    cause = error.__cause__
    if isinstance(cause, (ClientError, BotoCoreError)):
        return named_aws_error(cause, operation)
    return named_aws_error(error, operation)


class PowertoolsClaims:
    """The first caller's rolloutId is stored and returned to every later caller for the same
    (certificate ARN, serial) until the record expires, ``ttl_seconds`` seconds after the claim.

    ``sleep`` and ``clock`` (seconds since the epoch) are injectable for tests."""

    def __init__(self, table_name: str, ttl_seconds: int, *, dynamodb: Any | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        if ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be at least 1 second, got {ttl_seconds}")
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self._dynamodb = dynamodb if dynamodb is not None else cached_client("dynamodb")
        self._sleep = sleep
        self._clock = clock
        # The layer's client (adapters/aws.py: short SDK retries; the state machine retries).
        self._persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=self._dynamodb)
        self._config = IdempotencyConfig(event_key_jmespath="[certificateArn, serial]",
                                         expires_after_seconds=ttl_seconds, raise_on_no_idempotency_key=True)
        self._context: LambdaContext | None = None

        # Powertools' idempotent_function carries no type hints: the claim's type is restated below.
        @idempotent_function(data_keyword_argument="claim", persistence_store=self._persistence,  # type: ignore[untyped-decorator]
                             config=self._config)
        def claim_rollout(claim: dict[str, str]) -> dict[str, str]:
            return {"rolloutId": claim["rolloutId"], "claimedAt": datetime.now(UTC).isoformat()}

        self._claim: Callable[..., dict[str, str]] = claim_rollout

    def register_lambda_context(self, context: LambdaContext) -> None:
        """Call once per invocation (the handler does): in-progress records then expire with this
        invocation (Powertools IdempotencyConfig.register_lambda_context)."""
        self._context = context
        self._config.register_lambda_context(context)

    def _wait_budget(self) -> float:
        """Seconds this invocation may spend waiting for another caller's claim."""
        if self._context is None:
            return DEFAULT_WAIT_SECONDS
        return max(0.0, self._context.get_remaining_time_in_millis() / 1000 - RETURN_MARGIN_SECONDS)

    @staticmethod
    def _data(certificate_arn: str, serial: str, rollout_id: str) -> dict[str, str]:
        return {"certificateArn": certificate_arn, "serial": serial, "rolloutId": rollout_id}

    def _try_claim(self, data: dict[str, str]) -> str:
        try:
            return str(self._claim(claim=data)["rolloutId"])
        except IdempotencyPersistenceLayerError as e:
            if "update record state to success" in e.message:
                # Our in-progress record is written; without this it would hold the pair until
                # its in-progress expiry. A failed delete leaves that expiry as the bound.
                try:
                    self._persistence.delete_record(data=data, exception=e)
                except Exception as delete_error:  # noqa: BLE001 - best effort, the expiry bounds it
                    logger.warning("could not delete the in-progress claim after a failed write",
                                   extra={"error": type(delete_error).__name__})
            raise _persistence_error(e, "ClaimRollout") from None

    def _in_progress_expiry(self, data: dict[str, str]) -> float | None:
        """When the in-progress record of the pair expires (epoch seconds), None when unknown."""
        try:
            record = self._persistence.get_record(data=data)
        except IdempotencyItemNotFoundError:
            return 0.0
        except Exception:  # noqa: BLE001 - unknown expiry: wait within the budget only
            return None
        if record is None or record.in_progress_expiry_timestamp is None:
            return None
        return float(record.in_progress_expiry_timestamp) / 1000

    def claim(self, certificate_arn: str, serial: str, rollout_id: str) -> str:
        """Claim the pair for ``rollout_id``; returns the rollout id holding the claim (this one or
        an earlier one). Raises AwsThrottled / AwsServiceUnavailable / AwsPermanentError when
        DynamoDB fails, AwsRequestInProgress when another caller's claim is still in progress
        after waiting (at most until that claim's in-progress expiry or this invocation's
        remaining time minus RETURN_MARGIN_SECONDS)."""
        data = self._data(certificate_arn, serial, rollout_id)
        deadline = self._clock() + self._wait_budget()
        while True:
            try:
                return self._try_claim(data)
            except IdempotencyAlreadyInProgressError:
                expiry = self._in_progress_expiry(data)
                now = self._clock()
                until = deadline if expiry is None else min(deadline, expiry + POLL_SECONDS)
                if now >= until:
                    raise AwsRequestInProgress(
                        "ClaimRollout", "IdempotencyAlreadyInProgress",
                        f"another rollout's claim on {certificate_arn} serial {serial} is still in progress") from None
                self._sleep(min(POLL_SECONDS, until - now))

    def release(self, certificate_arn: str, serial: str, rollout_id: str) -> bool:
        """Delete the pair's claim if it is COMPLETED and held by ``rollout_id`` (a conditional
        DeleteItem: a claim taken meanwhile by another rollout stays). True when deleted.
        Raises a named AwsError."""
        try:
            record = self._persistence.get_record(data=self._data(certificate_arn, serial, rollout_id))
        except IdempotencyItemNotFoundError:
            return False
        except IdempotencyPersistenceLayerError as e:
            raise _persistence_error(e, "GetItem") from None
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "GetItem") from None
        if record is None:
            return False
        try:
            self._dynamodb.delete_item(
                TableName=self.table_name, Key={KEY_ATTR: {"S": record.idempotency_key}},
                ConditionExpression="#s = :completed AND contains(#d, :holder)",
                ExpressionAttributeNames={"#s": STATUS_ATTR, "#d": DATA_ATTR},
                ExpressionAttributeValues={":completed": {"S": COMPLETED},
                                           ":holder": {"S": json.dumps(rollout_id)}})
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise named_aws_error(e, "DeleteItem") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "DeleteItem") from None
        return True
