"""The per-certificate rollout lease in DynamoDB (port rollout_core/ports.py Leases).

One item per certificate in the rollout table, beside the outcome records and never listed
with them (no rollout id starts with "lease#"):

  rolloutId  "lease#<certificate ARN>"     targetId "-"
  holder, executionArn, serial, acquiredAt, expiresAt (epoch seconds; also the table's TTL
  attribute, so DynamoDB deletes a long-expired lease by itself), and, once a newer request
  waits, supersededBySerial / supersededByRollout.

Every write is an UpdateItem or DeleteItem with a condition expression: DynamoDB evaluates
the condition and the write as one atomic step, so two rollouts never both take the lease
(the approach of the amazon-dynamodb-lock-client: a conditional write on an owner and a
lease expiry, rather than a read followed by a write). ConditionalCheckFailedException is
how a lost race shows: acquire turns it into LeaseHeld, the others into False/None.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import table as cached_table
from rollout_core.adapters.dynamo import get_item, plain
from rollout_core.adapters.errors import named_aws_error
from rollout_core.ports import Lease, LeaseHeld

CONDITION_FAILED = "ConditionalCheckFailedException"


def lease_key(certificate_arn: str) -> dict[str, str]:
    """The rollout-table key of the certificate's lease item."""
    return {"rolloutId": f"lease#{certificate_arn}", "targetId": "-"}


def _lease(certificate_arn: str, item: dict[str, Any] | None) -> Lease | None:
    if not item or "holder" not in item:
        return None
    item = plain(item)
    return Lease(certificate_arn=certificate_arn, holder=str(item["holder"]),
                 execution_arn=str(item.get("executionArn", "")), serial=str(item.get("serial", "")),
                 acquired_at=int(item.get("acquiredAt", 0)), expires_at=int(item.get("expiresAt", 0)),
                 superseded_by_serial=item.get("supersededBySerial"),
                 superseded_by_rollout=item.get("supersededByRollout"))


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == CONDITION_FAILED


class DynamoLeases:
    """Leases in the rollout table (``table_name``), through conditional writes."""

    def __init__(self, table_name: str, *, dynamodb: Any | None = None) -> None:
        self.table_name = table_name
        self._table = dynamodb.Table(table_name) if dynamodb is not None else cached_table(table_name)

    def _update(self, certificate_arn: str, operation: str, **kwargs: Any) -> Lease | None:
        """One conditional UpdateItem returning the new item; None when the condition failed."""
        try:
            answer = self._table.update_item(Key=lease_key(certificate_arn), ReturnValues="ALL_NEW", **kwargs)
        except ClientError as e:
            if _condition_failed(e):
                return None
            raise named_aws_error(e, operation) from None
        except BotoCoreError as e:
            raise named_aws_error(e, operation) from None
        return _lease(certificate_arn, answer.get("Attributes"))

    def acquire(self, certificate_arn: str, rollout_id: str, execution_arn: str, serial: str, *,
                now: int, duration_seconds: int) -> Lease:
        """Free or expired: take it (mark cleared). Ours: extend it (mark kept). Else LeaseHeld."""
        expires = now + duration_seconds
        for _ in range(3):  # the holder may release between our writes and our read
            taken = self._update(
                certificate_arn, "UpdateItem",
                UpdateExpression=("SET holder = :r, executionArn = :e, serial = :s, acquiredAt = :now, "
                                  "expiresAt = :exp REMOVE supersededBySerial, supersededByRollout"),
                ConditionExpression="attribute_not_exists(holder) OR expiresAt <= :now",
                ExpressionAttributeValues={":r": rollout_id, ":e": execution_arn, ":s": serial, ":now": now,
                                           ":exp": expires})
            if taken is not None:
                return taken
            ours = self.renew(certificate_arn, rollout_id, now=now, duration_seconds=duration_seconds)
            if ours is not None:
                return ours
            held = self.get(certificate_arn)
            if held is not None:
                raise LeaseHeld(certificate_arn, held)
        raise LeaseHeld(certificate_arn, None)

    def renew(self, certificate_arn: str, rollout_id: str, *, now: int, duration_seconds: int) -> Lease | None:
        """Extend the lease ``rollout_id`` holds; None when it holds none."""
        return self._update(certificate_arn, "UpdateItem", UpdateExpression="SET expiresAt = :exp",
                            ConditionExpression="holder = :r",
                            ExpressionAttributeValues={":r": rollout_id, ":exp": now + duration_seconds})

    def mark_superseded(self, certificate_arn: str, holder: str, by_rollout_id: str, by_serial: str) -> bool:
        """Record the newer request on the lease while ``holder`` still holds it."""
        marked = self._update(certificate_arn, "UpdateItem",
                              UpdateExpression="SET supersededBySerial = :s, supersededByRollout = :b",
                              ConditionExpression="holder = :h",
                              ExpressionAttributeValues={":h": holder, ":s": by_serial, ":b": by_rollout_id})
        return marked is not None

    def release(self, certificate_arn: str, rollout_id: str) -> bool:
        """Delete the lease when ``rollout_id`` holds it."""
        try:
            self._table.delete_item(Key=lease_key(certificate_arn), ConditionExpression="holder = :r",
                                    ExpressionAttributeValues={":r": rollout_id})
        except ClientError as e:
            if _condition_failed(e):
                return False
            raise named_aws_error(e, "DeleteItem") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "DeleteItem") from None
        return True

    def get(self, certificate_arn: str) -> Lease | None:
        """The stored lease (consistent read), or None."""
        return _lease(certificate_arn, get_item(self._table, lease_key(certificate_arn)))
