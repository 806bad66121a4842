"""DynamoDB adapters: the inventory (which targets serve which certificate), the rollout
records (one item per target per rollout) and the waiting-task records (in the rollout table).

Ports: rollout_core/ports.py Inventory, RolloutRecords, WaitingTasks. Every DynamoDB failure
becomes a named AwsError (adapters/errors.py); numbers come back as int/float, not Decimal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import table as cached_table
from rollout_core.adapters.errors import named_aws_error
from rollout_core.models import Target
from rollout_core.ports import DeploymentState, NotificationMarker, TargetNotFound, WaitingTask

__all__ = ["DynamoInventory", "DynamoRolloutRecords", "DynamoWaitingTasks", "TargetNotFound", "plain"]


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; give ints/floats back (recursively)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _table(table_name: str, dynamodb: Any | None) -> Any:
    """The Table resource: from ``dynamodb`` (a boto3 DynamoDB resource, e.g. the CLI's with its
    own region and endpoint) or the process-wide cached one (adapters/aws.py)."""
    return dynamodb.Table(table_name) if dynamodb is not None else cached_table(table_name)


def get_item(table: Any, key: Mapping[str, str], *, consistent: bool = True) -> dict[str, Any] | None:
    """GetItem of ``key`` on the boto3 Table ``table`` (a consistent read unless told otherwise):
    the raw item, or None when there is none. Raises a named AwsError."""
    try:
        item: dict[str, Any] | None = table.get_item(Key=dict(key), ConsistentRead=consistent).get("Item")
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "GetItem") from None
    return item


def _pages(call: Any, operation: str, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    """Follow LastEvaluatedKey; one list of plain items per page. Raises a named AwsError."""
    while True:
        try:
            page = call(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, operation) from None
        yield [plain(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class DynamoInventory:
    """The inventory table (hash key certificateArn, range key targetId)."""

    def __init__(self, table_name: str, *, dynamodb: Any | None = None) -> None:
        self.table_name = table_name
        self._table = _table(table_name, dynamodb)

    def _query(self, certificate_arn: str, **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in _pages(self._table.query, "Query",
                           KeyConditionExpression=Key("certificateArn").eq(certificate_arn), **kwargs):
            items.extend(page)
        return items

    def get(self, certificate_arn: str, target_id: str) -> Target:
        """One target, validated. Raises TargetNotFound, pydantic.ValidationError or a named AwsError."""
        item = get_item(self._table, {"certificateArn": certificate_arn, "targetId": target_id}, consistent=False)
        if not item:
            raise TargetNotFound(f"target {target_id} of {certificate_arn} is not in the inventory")
        return Target.model_validate(plain(item))

    def targets_for(self, certificate_arn: str) -> list[Target]:
        """Every target of ``certificate_arn``, validated, ordered by targetId (the range key)."""
        return [Target.model_validate(i) for i in self._query(certificate_arn)]

    def deployment_states(self, certificate_arn: str) -> list[DeploymentState]:
        """Each target's id and deployment state, read with a projection, settings not validated."""
        items = self._query(certificate_arn, ProjectionExpression="targetId, lastDeployedSerial, lastOutcome")
        return [DeploymentState(target_id=str(i["targetId"]), last_deployed_serial=i.get("lastDeployedSerial"),
                                last_outcome=i.get("lastOutcome")) for i in items]

    def items_for(self, certificate_arn: str) -> list[dict[str, Any]]:
        """Every raw item of ``certificate_arn``, ordered by targetId."""
        return self._query(certificate_arn)

    def scan_pages(self, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """The whole inventory, one list of raw items per Scan page (Limit ``page_size``, 1..1000)."""
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000 items, got {page_size}")
        return _pages(self._table.scan, "Scan", Limit=page_size)

    def put(self, target: Target) -> None:
        """Add or replace a target's item (keeps nothing of a previous item)."""
        try:
            self._table.put_item(Item=target.model_dump(exclude_none=True))
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutItem") from None

    def put_many(self, targets: Sequence[Target]) -> None:
        """Add or replace several targets with BatchWriteItem (boto3's batch writer resends
        unprocessed items)."""
        try:
            with self._table.batch_writer(overwrite_by_pkeys=["certificateArn", "targetId"]) as batch:
                for target in targets:
                    batch.put_item(Item=target.model_dump(exclude_none=True))
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "BatchWriteItem") from None

    def delete(self, certificate_arn: str, target_id: str) -> bool:
        """Remove a target; True if it existed."""
        try:
            answer = self._table.delete_item(Key={"certificateArn": certificate_arn, "targetId": target_id},
                                             ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "DeleteItem") from None
        return bool(answer.get("Attributes"))

    def mark_deployed(self, certificate_arn: str, target_id: str, serial: str, outcome: str,
                      at_iso: str) -> None:
        """Record on the item what the target was last verified to serve (no-op when the target
        was removed from the inventory meanwhile)."""
        try:
            self._table.update_item(
                Key={"certificateArn": certificate_arn, "targetId": target_id},
                UpdateExpression="SET lastDeployedSerial = :s, lastDeployedAt = :t, lastOutcome = :o",
                ConditionExpression="attribute_exists(targetId)",
                ExpressionAttributeValues={":s": serial, ":t": at_iso, ":o": outcome},
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return
            raise named_aws_error(e, "UpdateItem") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "UpdateItem") from None


class DynamoRolloutRecords:
    """The rollout table (hash key rolloutId, range key targetId): one outcome per target."""

    def __init__(self, table_name: str, *, dynamodb: Any | None = None) -> None:
        self.table_name = table_name
        self._table = _table(table_name, dynamodb)

    def put(self, record: Mapping[str, Any]) -> None:
        """Write one record; None values are dropped. Raises a named AwsError."""
        try:
            self._table.put_item(Item={k: v for k, v in record.items() if v is not None})
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutItem") from None

    def list(self, rollout_id: str) -> list[dict[str, Any]]:
        """Every record of ``rollout_id``, ordered by targetId."""
        items: list[dict[str, Any]] = []
        for page in _pages(self._table.query, "Query", KeyConditionExpression=Key("rolloutId").eq(rollout_id)):
            items.extend(page)
        return items

    def mark_notified(self, rollout_id: str, *, by: str, outcome: str, message_id: str) -> None:
        """Record that ``by`` published the rollout's notification (replaces any marker)."""
        item = {**notified_record_key(rollout_id), "by": by, "outcome": outcome, "messageId": message_id,
                "expiresAt": int(time.time()) + MARKER_TTL_SECONDS}
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutItem") from None

    def claim_notification(self, rollout_id: str, *, by: str, outcome: str) -> bool:
        """Write a marker unless one exists (PutItem with attribute_not_exists); False when one does."""
        item = {**notified_record_key(rollout_id), "by": by, "outcome": outcome,
                "expiresAt": int(time.time()) + MARKER_TTL_SECONDS}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(rolloutId)")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise named_aws_error(e, "PutItem") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "PutItem") from None
        return True

    def forget_notification(self, rollout_id: str) -> None:
        """Delete the rollout's marker."""
        try:
            self._table.delete_item(Key=notified_record_key(rollout_id))
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "DeleteItem") from None

    def notification(self, rollout_id: str) -> NotificationMarker | None:
        """The rollout's marker (a consistent read), or None."""
        item = get_item(self._table, notified_record_key(rollout_id))
        if not item:
            return None
        return NotificationMarker(rollout_id=rollout_id, by=str(item.get("by", "")), outcome=str(item.get("outcome", "")),
                                  message_id=str(item["messageId"]) if item.get("messageId") else None)


# A marker outlives any retry of the execution's end event (EventBridge retries for 24 h).
MARKER_TTL_SECONDS = 30 * 86400


def notified_record_key(rollout_id: str) -> dict[str, str]:
    """Rollout-table key of a rollout's notification marker (beside its outcome records, never
    listed with them: no rollout id starts with "notified#")."""
    return {"rolloutId": f"notified#{rollout_id}", "targetId": "-"}


def waiting_record_key(key: str) -> dict[str, str]:
    """Rollout-table key of a waiting-task record (beside the outcome records, never listed
    with them: no rollout id starts with "waiting#")."""
    return {"rolloutId": f"waiting#{key}", "targetId": "-"}


class DynamoWaitingTasks:
    """Waiting-task records in the rollout table, expiring through its TTL attribute expiresAt."""

    def __init__(self, table_name: str, *, dynamodb: Any | None = None) -> None:
        self.table_name = table_name
        self._table = _table(table_name, dynamodb)

    def remember(self, key: str, task_token: str, context: Mapping[str, Any], *, ttl_seconds: int) -> None:
        """Store the task token and context under ``key``; expires ``ttl_seconds`` seconds from now."""
        item = {**waiting_record_key(key), "taskToken": task_token, "context": json.dumps(dict(context)),
                "expiresAt": int(time.time()) + ttl_seconds}
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutItem") from None

    def attach_command(self, key: str, command_id: str, instance_id: str) -> None:
        """Add the command's ids to the record under ``key`` (conditional: a record that
        expired or was never written stays absent)."""
        try:
            self._table.update_item(
                Key=waiting_record_key(key), UpdateExpression="SET commandId = :c, instanceId = :i",
                ConditionExpression="attribute_exists(taskToken)",
                ExpressionAttributeValues={":c": command_id, ":i": instance_id},
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return
            raise named_aws_error(e, "UpdateItem") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "UpdateItem") from None

    def find(self, key: str) -> WaitingTask | None:
        """The task stored under ``key`` (a consistent read), or None."""
        item = get_item(self._table, waiting_record_key(key))
        if not item:
            return None
        command_id, instance_id = item.get("commandId"), item.get("instanceId")
        return WaitingTask(task_token=str(item["taskToken"]), context=json.loads(item.get("context") or "{}"),
                           command_id=str(command_id) if command_id else None,
                           instance_id=str(instance_id) if instance_id else None)
