"""The AWS adapters of the inventory and rollout records (rollout_core/adapters/dynamo.py) on
moto's in-process DynamoDB: paging, replace-on-put, delete, the conditional mark_deployed,
and the waiting-task records. The CLI (src/cert_rollout/ops.py) can use the same class with
its own boto3 resource."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from rollout_core.adapters.dynamo import DynamoInventory, DynamoRolloutRecords, DynamoWaitingTasks
from rollout_core.adapters.errors import AwsPermanentError
from rollout_core.ports import TargetNotFound

from tests.fakes.world import ARN, target

OTHER_ARN = ARN.replace("6f1e2d3c", "7a7a7a7a")


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        resource = boto3.resource("dynamodb", region_name="eu-west-1")
        for name, (hash_key, range_key) in {"inventory": ("certificateArn", "targetId"),
                                            "rollouts": ("rolloutId", "targetId")}.items():
            resource.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                                  KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"},
                                             {"AttributeName": range_key, "KeyType": "RANGE"}],
                                  AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"},
                                                        {"AttributeName": range_key, "AttributeType": "S"}])
        yield resource


def test_put_get_replace_and_delete(dynamodb: Any) -> None:
    inventory = DynamoInventory("inventory", dynamodb=dynamodb)
    inventory.put(target("web-1", port=8443))
    assert inventory.get(ARN, "web-1").port == 8443
    inventory.put(target("web-1", port=9443, reloadCommand=None))
    replaced = inventory.get(ARN, "web-1")
    assert (replaced.port, replaced.reloadCommand) == (9443, None)  # nothing of the old item kept
    assert inventory.delete(ARN, "web-1") is True
    assert inventory.delete(ARN, "web-1") is False
    with pytest.raises(TargetNotFound):
        inventory.get(ARN, "web-1")


def test_query_and_paged_scan_see_every_item(dynamodb: Any) -> None:
    inventory = DynamoInventory("inventory", dynamodb=dynamodb)
    inventory.put_many([target(f"web-{i:02d}", port=8400 + i) for i in range(25)])
    inventory.put(target("api-1", certificateArn=OTHER_ARN))
    assert [t.targetId for t in inventory.targets_for(ARN)] == [f"web-{i:02d}" for i in range(25)]
    assert [i["port"] for i in inventory.items_for(OTHER_ARN)] == [8443]  # ints, not Decimal
    pages = list(inventory.scan_pages(page_size=10))
    assert [len(p) for p in pages][:3] == [10, 10, 6] and sum(len(p) for p in pages) == 26
    with pytest.raises(ValueError, match="page_size"):
        list(inventory.scan_pages(page_size=0))


def test_deployment_states_skip_validation_and_mark_deployed_never_recreates(dynamodb: Any) -> None:
    inventory = DynamoInventory("inventory", dynamodb=dynamodb)
    inventory.put(target("web-1"))
    dynamodb.Table("inventory").put_item(Item={"certificateArn": ARN, "targetId": "web-bad", "port": "443"})
    inventory.mark_deployed(ARN, "web-1", "0a:bc", "VERIFIED", "2026-11-28T06:10:00+00:00")
    inventory.mark_deployed(ARN, "web-gone", "0a:bc", "VERIFIED", "2026-11-28T06:10:00+00:00")
    states = {s.target_id: s for s in inventory.deployment_states(ARN)}
    assert set(states) == {"web-1", "web-bad"}
    assert (states["web-1"].last_deployed_serial, states["web-1"].last_outcome) == ("0a:bc", "VERIFIED")
    assert inventory.get(ARN, "web-1").lastDeployedSerial == "0a:bc"
    assert dynamodb.Table("inventory").get_item(Key={"certificateArn": ARN, "targetId": "web-gone"}).get("Item") is None


def test_rollout_records_and_waiting_tasks_share_the_rollout_table_without_mixing(dynamodb: Any) -> None:
    records = DynamoRolloutRecords("rollouts", dynamodb=dynamodb)
    waiting = DynamoWaitingTasks("rollouts", dynamodb=dynamodb)
    records.put({"rolloutId": "r1", "targetId": "web-1", "outcome": "VERIFIED", "reason": None, "expiresAt": 5})
    waiting.remember("ab" * 16, "token", {"endpoint": "h:443", "servedSerialBefore": None}, ttl_seconds=60)
    assert records.list("r1") == [{"rolloutId": "r1", "targetId": "web-1", "outcome": "VERIFIED", "expiresAt": 5}]
    task = waiting.find("ab" * 16)
    assert task is not None and task.task_token == "token"
    assert task.context == {"endpoint": "h:443", "servedSerialBefore": None}
    assert waiting.find("cd" * 16) is None


def test_a_missing_table_is_a_named_permanent_error(dynamodb: Any) -> None:
    with pytest.raises(AwsPermanentError, match="ResourceNotFoundException"):
        DynamoInventory("no-such-table", dynamodb=dynamodb).get(ARN, "web-1")
