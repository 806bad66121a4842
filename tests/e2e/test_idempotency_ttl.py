"""IdempotencyTtlDays reaches the (certificate ARN, serial) claim in days (issue 9, part 2):
with IdempotencyTtlDays "1" the rollout runs, the claim expires a day later (not a second), and
a second event for the same serial ends ALREADY_DEPLOYED as a duplicate of the first rollout."""

from __future__ import annotations

import time
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from cert_rollout.localcloud.scenario import state_outputs

from .conftest import explain, install_commands_on, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DAY = 86400


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    report, data = run_scenario("idempotency-ttl-days.yaml")
    return {"report": report, "data": data, "by_step": {e["step"]: e for e in report["events"]},
            "finished": time.time()}


def test_the_stack_is_deployed_with_a_one_day_claim(run: dict[str, Any]) -> None:
    assert run["report"]["parameters"]["IdempotencyTtlDays"] == "1"


def test_rollout_succeeds_with_a_one_day_claim(run: dict[str, Any]) -> None:
    first = run["by_step"][2]
    assert (first["status"], first["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), explain(first)
    assert {t["id"]: t["outcome"] for t in first["targets"]} == {"ttl-1": "VERIFIED", "ttl-2": "VERIFIED"}


def test_duplicate_event_for_the_same_serial_is_already_deployed_by_the_claim(run: dict[str, Any]) -> None:
    first, duplicate = run["by_step"][2], run["by_step"][4]
    assert (duplicate["status"], duplicate["outcome"]) == ("SUCCEEDED", "ALREADY_DEPLOYED"), explain(duplicate)
    [validated] = state_outputs(duplicate["history"], "ValidateEvent")
    # the claim decided, not the inventory's "every target already serves it" fallback
    assert validated["rollout"]["duplicateOf"] == first["executionArn"].rsplit(":", 1)[-1], validated["rollout"]
    assert validated["rollout"]["serial"] == first["expected_serial"]
    for target in ("ttl-1", "ttl-2"):
        assert len(install_commands_on(run["data"], target)) == 1, target


def test_the_claim_expires_one_day_after_it_was_made(run: dict[str, Any]) -> None:
    des = TypeDeserializer()
    claims = [{k: des.deserialize(v) for k, v in item.items()}
              for table, items in run["data"]["dynamodb_items"].items() if "IdempotencyTable" in table
              for item in items]
    [claim] = claims
    assert claim["status"] == "COMPLETED"
    lifetime = int(claim["expiration"]) - run["finished"]
    # made during the run (well under 300 s before it finished), expiring a day after
    assert DAY - 300 < lifetime <= DAY, lifetime
