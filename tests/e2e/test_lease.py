"""One writer per certificate, the newest serial wins (issue 10, item 1) on the local cloud:
two renewals 2 s apart, then a manual redeploy (scenarios/lease-race.yaml); an aborted
execution's lease expires and a later rollout proceeds (scenarios/lease-crash.yaml)."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_core.domain.serials import serials_equal
from rollout_core.logic.waiting import waiting_task_key

from cert_rollout.localcloud.scenario import state_outputs

from .conftest import explain, run_scenario, state_entered, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
TARGETS = ["race-1", "race-2", "race-3", "race-4"]


@pytest.fixture(scope="module")
def race() -> dict[str, Any]:
    report, data = run_scenario("lease-race.yaml")
    return {"report": report, "data": data, "by_step": {e["step"]: e for e in report["events"]},
            "final": report["certificates"]["web"]["serial_final"]}


def leases_left(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for items in data["dynamodb_items"].values() for i in items if str(i.get("rolloutId", "")).startswith("lease#")]


def test_the_redeploy_finds_acms_final_serial_on_every_target(race: dict[str, Any]) -> None:
    forced = race["by_step"][9]
    assert forced["outcome"] == "ROLLED_OUT", explain(forced)
    served_before = {t["id"]: t["served_serial_before"] for t in forced["targets"]}
    assert set(served_before) == set(TARGETS), explain(forced)
    for target_id, before in served_before.items():
        assert before and serials_equal(before, race["final"]), (target_id, before, race["final"])
    for target_id in TARGETS:
        assert serials_equal(race["data"]["targets"][target_id]["served_serial_final"], race["final"])


def test_the_warm_up_rollout_rolled_out(race: dict[str, Any]) -> None:
    assert race["by_step"][2]["outcome"] == "ROLLED_OUT", explain(race["by_step"][2])


def test_the_second_renewal_covers_every_target_and_the_first_stops(race: dict[str, Any]) -> None:
    first, second = race["by_step"][4], race["by_step"][7]
    assert second["outcome"] == "ROLLED_OUT", explain(second)
    assert serials_equal(second["expected_serial"], race["final"])
    assert {t["id"]: t["outcome"] for t in second["targets"]} == dict.fromkeys(TARGETS, "VERIFIED")
    print(explain(first))  # which of the first rollout's targets were superseded (pytest -s shows it)
    assert first["outcome"] in ("SUPERSEDED", "ROLLED_OUT"), explain(first)
    assert not serials_equal(first["expected_serial"], race["final"])
    outcomes = {t["id"]: t["outcome"] for t in first["targets"]}
    assert set(outcomes.values()) <= {"VERIFIED", "SUPERSEDED"}, explain(first)
    # The second rollout waited for the first (its lease was marked superseded).
    leases = [o["lease"] for o in state_outputs(second["history"], "AcquireLease")]
    assert leases[-1]["state"] == "ACQUIRED", leases
    if first["outcome"] == "SUPERSEDED":
        assert any(lease["state"] == "WAITING" and lease["holder"] == first["executionArn"].rsplit(":", 1)[-1]
                   for lease in leases), leases
        for t in first["targets"]:
            if t["outcome"] == "SUPERSEDED":
                assert t["reason"] == "superseded", t
                assert t["detail"].startswith(f"superseded by serial {second['expected_serial']}"), t
        [message] = first["sns_messages"]
        assert message["MessageAttributes"]["outcome"]["Value"] == "SUPERSEDED"
        assert f"superseded by serial {second['expected_serial']}" in message["Message"]
        assert first["status"] == "SUCCEEDED"


def test_no_report_calls_a_target_verified_that_later_went_back_to_an_older_serial(race: dict[str, Any]) -> None:
    """Rollouts in the order they took the lease; a target VERIFIED by one of them serves that
    serial until a later one verifies another: never an older one (the bug of issue 10)."""
    entries = [race["by_step"][s] for s in (4, 7, 9)]
    first, second, forced = entries
    assert state_entered(second["history"], "InstallTargets"), explain(second)
    for t in first["targets"]:
        if t["outcome"] == "VERIFIED":
            assert serials_equal(t["served_serial_after"], first["expected_serial"]), t
    for entry in (second, forced):
        for target_id, t in target_by_id(entry).items():
            assert serials_equal(t["served_serial_after"], race["final"]), (entry["step"], target_id, t)
    # One writer at a time: the first rollout's last command was sent before the second
    # rollout's first one (SSM keeps commands in the order they were sent).
    commands = race["data"]["ssm_commands"]

    def sent(entry: dict[str, Any]) -> list[int]:
        name = entry["executionArn"].rsplit(":", 1)[-1]
        keys = {waiting_task_key(name, t, action) for t in TARGETS for action in ("install", "rollback")}
        return [i for i, c in enumerate(commands) if any(k in c["Comment"] for k in keys)]

    assert sent(second), explain(second)
    if sent(first):  # none when the second marked it superseded before its first target
        assert max(sent(first)) < min(sent(second)), (sent(first), sent(second))
    assert leases_left(race["data"]) == [], "every execution releases its lease"


def test_an_aborted_executions_lease_expires_and_the_next_rollout_proceeds() -> None:
    report, data = run_scenario("lease-crash.yaml")
    by_step = {e["step"]: e for e in report["events"]}
    aborted, forced = by_step[2], by_step[4]
    # AWS reports a stopped execution ABORTED; moto's interpreter, stopped inside the Map, ends it
    # FAILED with States.Runtime. Either way it ended without reaching ReleaseLease.
    assert aborted["status"] in ("ABORTED", "FAILED"), explain(aborted)
    assert not state_entered(aborted["history"], "ReleaseLease"), explain(aborted)
    assert [o["lease"]["state"] for o in state_outputs(aborted["history"], "AcquireLease")] == ["ACQUIRED"]
    assert forced["outcome"] == "ROLLED_OUT", explain(forced)
    leases = [o["lease"] for o in state_outputs(forced["history"], "AcquireLease")]
    aborted_id = aborted["executionArn"].rsplit(":", 1)[-1]
    assert leases[0]["state"] == "WAITING" and leases[0]["holder"] == aborted_id, leases
    assert leases[-1]["state"] == "ACQUIRED", leases
    waited = [lease for lease in leases if lease["state"] == "WAITING"]
    assert all(w["holder"] == aborted_id for w in waited), leases  # nobody released it: it expired
    assert state_entered(forced["history"], "WaitForLease")
    assert {t["outcome"] for t in forced["targets"]} == {"VERIFIED"}, explain(forced)
    assert leases_left(data) == []
