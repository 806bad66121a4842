"""DynamoDB: the inventory (which targets serve which certificate) and the rollout records
(one item per target per rollout)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import table
from rollout_core.adapters.errors import named_aws_error
from rollout_core.models import Target


class TargetNotFound(Exception):
    """The inventory has no such target for this certificate."""


def plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; give ints/floats back."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _query_all(tbl: Any, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = tbl.query(**kwargs)
        items.extend(plain(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def list_targets(table_name: str, certificate_arn: str) -> list[Target]:
    """Every target of ``certificate_arn``, ordered by targetId. Raises a named AwsError."""
    try:
        items = _query_all(table(table_name), KeyConditionExpression=Key("certificateArn").eq(certificate_arn))
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "Query") from None
    return [Target.model_validate(i) for i in items]


def list_target_states(table_name: str, certificate_arn: str) -> list[dict[str, Any]]:
    """Each target's id and deployment state (targetId, lastDeployedSerial, lastOutcome), without
    validating its settings: one bad inventory item must fail only its own target (in the Map,
    as invalid-target-settings), never the whole rollout."""
    try:
        return _query_all(table(table_name), KeyConditionExpression=Key("certificateArn").eq(certificate_arn),
                          ProjectionExpression="targetId, lastDeployedSerial, lastOutcome")
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "Query") from None


def get_target(table_name: str, certificate_arn: str, target_id: str) -> Target:
    """One target. Raises TargetNotFound or a named AwsError."""
    try:
        item = table(table_name).get_item(Key={"certificateArn": certificate_arn, "targetId": target_id}).get("Item")
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "GetItem") from None
    if not item:
        raise TargetNotFound(f"target {target_id} of {certificate_arn} is not in the inventory")
    return Target.model_validate(plain(item))


def put_target(table_name: str, target: Target) -> None:
    """Add or replace a target's settings (keeps nothing of a previous item)."""
    item = target.model_dump(exclude_none=True)
    try:
        table(table_name).put_item(Item=item)
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "PutItem") from None


def delete_target(table_name: str, certificate_arn: str, target_id: str) -> bool:
    """Remove a target; True if it existed."""
    try:
        answer = table(table_name).delete_item(Key={"certificateArn": certificate_arn, "targetId": target_id},
                                               ReturnValues="ALL_OLD")
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "DeleteItem") from None
    return bool(answer.get("Attributes"))


def scan_targets(table_name: str) -> list[Target]:
    """The whole inventory (for status views)."""
    tbl = table(table_name)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    try:
        while True:
            page = tbl.scan(**kwargs)
            items.extend(plain(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "Scan") from None
    return [Target.model_validate(i) for i in items]


def mark_deployed(table_name: str, certificate_arn: str, target_id: str, serial: str, outcome: str,
                  at_iso: str) -> None:
    """Record on the inventory item what the target was last verified to serve."""
    try:
        table(table_name).update_item(
            Key={"certificateArn": certificate_arn, "targetId": target_id},
            UpdateExpression="SET lastDeployedSerial = :s, lastDeployedAt = :t, lastOutcome = :o",
            ConditionExpression="attribute_exists(targetId)",
            ExpressionAttributeValues={":s": serial, ":t": at_iso, ":o": outcome},
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return  # the target was removed from the inventory meanwhile
        raise named_aws_error(e, "UpdateItem") from None
    except BotoCoreError as e:
        raise named_aws_error(e, "UpdateItem") from None


def put_rollout_record(table_name: str, record: dict[str, Any]) -> None:
    """One target's outcome in one rollout (keys rolloutId, targetId). No key material."""
    try:
        table(table_name).put_item(Item={k: v for k, v in record.items() if v is not None})
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "PutItem") from None


def list_rollout_records(table_name: str, rollout_id: str) -> list[dict[str, Any]]:
    """Every target outcome recorded for ``rollout_id``."""
    try:
        return _query_all(table(table_name), KeyConditionExpression=Key("rolloutId").eq(rollout_id))
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "Query") from None
