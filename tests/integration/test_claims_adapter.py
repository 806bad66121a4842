"""The idempotency claim adapter (rollout_core/adapters/claims.py) on moto's in-process DynamoDB
with Powertools Idempotency: a transient persistence error comes out as a named transient
AwsError and leaves no claim behind, an in-progress claim expires with the Lambda invocation,
another caller's in-progress claim is waited for (never a duplicate), and release is
conditional on the holder (issue 10, item 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from rollout_core.adapters.claims import PowertoolsClaims
from rollout_core.adapters.errors import AwsPermanentError, AwsRequestInProgress, AwsThrottled

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"
SERIAL = "0f:ac:01"
DAY = 86400


class Context:
    """The part of Lambda's context Powertools reads: the invocation's remaining time."""

    def __init__(self, remaining_seconds: float) -> None:
        self.deadline = time.time() + remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.time()) * 1000)


class FailingClient:
    """A DynamoDB client whose next calls of one operation answer an AWS error code."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failures: dict[str, list[str]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self.failures:
            return method

        def call(**kwargs: Any) -> Any:
            if self.failures[name]:
                code = self.failures[name].pop(0)
                raise ClientError({"Error": {"Code": code, "Message": "injected"},
                                   "ResponseMetadata": {"HTTPStatusCode": 400}}, name)
            return method(**kwargs)
        return call


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[FailingClient]:
    for key, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        raw = boto3.client("dynamodb", region_name="eu-west-1")
        raw.create_table(TableName="idempotency", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        yield FailingClient(raw)


def items(client: FailingClient) -> list[dict[str, Any]]:
    return list(client._client.scan(TableName="idempotency")["Items"])


def claims(client: FailingClient, remaining_seconds: float = 30) -> PowertoolsClaims:
    c = PowertoolsClaims("idempotency", DAY, dynamodb=client)
    c.register_lambda_context(Context(remaining_seconds))  # type: ignore[arg-type]
    return c


def test_first_claim_wins_and_later_callers_get_its_rollout_id(client: FailingClient) -> None:
    assert claims(client).claim(ARN, SERIAL, "rollout-1") == "rollout-1"
    assert claims(client).claim(ARN, SERIAL, "rollout-2") == "rollout-1"
    [item] = items(client)
    assert item["status"]["S"] == "COMPLETED"
    assert DAY - 60 < int(item["expiration"]["N"]) - time.time() <= DAY


def test_the_in_progress_record_expires_with_the_lambda_invocation(client: FailingClient) -> None:
    c = claims(client, remaining_seconds=25)
    c._persistence.configure(c._config, "claims")  # as the first claim does
    started = time.time()
    c._persistence.save_inprogress({"certificateArn": ARN, "serial": SERIAL, "rolloutId": "r"},
                                   remaining_time_in_millis=Context(25).get_remaining_time_in_millis())
    [item] = items(client)
    expiry = int(item["in_progress_expiration"]["N"]) / 1000
    assert started + 24 < expiry <= time.time() + 25


@pytest.mark.parametrize("operation", ["put_item", "update_item"])
def test_a_throttled_claim_write_is_a_named_transient_error_and_leaves_no_claim(
        client: FailingClient, operation: str) -> None:
    client.failures[operation] = ["ProvisionedThroughputExceededException"]
    with pytest.raises(AwsThrottled) as raised:
        claims(client).claim(ARN, SERIAL, "rollout-1")
    assert raised.value.code == "ProvisionedThroughputExceededException"
    assert items(client) == []  # update_item failed: the in-progress record it followed was deleted
    # the state machine's retry of the same execution claims at once, and the claim stands
    assert claims(client).claim(ARN, SERIAL, "rollout-1") == "rollout-1"
    assert claims(client).claim(ARN, SERIAL, "rollout-2") == "rollout-1"


def test_a_permanent_persistence_error_is_named_permanent(client: FailingClient) -> None:
    client.failures["put_item"] = ["AccessDeniedException"]
    with pytest.raises(AwsPermanentError):
        claims(client).claim(ARN, SERIAL, "rollout-1")


def test_another_callers_in_progress_claim_is_waited_for_until_it_expires(client: FailingClient) -> None:
    # a crashed claimer: in progress for 1.5 s more (its invocation's remaining time), never completed
    holder = claims(client)
    holder.claim(ARN, "01", "warm-up")  # configures the persistence layer with the real function name
    key_data = {"certificateArn": ARN, "serial": SERIAL, "rolloutId": "crashed"}
    holder._persistence.save_inprogress(key_data, remaining_time_in_millis=1500)
    started = time.time()
    assert claims(client).claim(ARN, SERIAL, "rollout-2") == "rollout-2"
    assert 1.0 < time.time() - started < 6


def test_an_in_progress_claim_beyond_this_invocation_is_request_in_progress(client: FailingClient) -> None:
    holder = claims(client)
    holder.claim(ARN, "01", "warm-up")
    holder._persistence.save_inprogress({"certificateArn": ARN, "serial": SERIAL, "rolloutId": "other"},
                                        remaining_time_in_millis=60_000)
    started = time.time()
    with pytest.raises(AwsRequestInProgress):  # retried by the state machine, not a duplicate
        claims(client, remaining_seconds=6).claim(ARN, SERIAL, "rollout-2")
    assert time.time() - started < 3


def test_release_deletes_only_the_named_holders_completed_claim(client: FailingClient) -> None:
    c = claims(client)
    c.claim(ARN, SERIAL, "rollout-1")
    assert c.release(ARN, SERIAL, "rollout-9") is False
    assert c.claim(ARN, SERIAL, "rollout-2") == "rollout-1"
    assert c.release(ARN, SERIAL, "rollout-1") is True
    assert c.release(ARN, SERIAL, "rollout-1") is False
    assert c.claim(ARN, SERIAL, "rollout-2") == "rollout-2"
