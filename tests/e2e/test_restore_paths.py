"""Issue 10 items 4, 5 and 8 on the local cloud (scenario restore-paths.yaml): a server that
dies right after a successful reload ends ROLLED_BACK with the restore attempt and its result
named, and a later force redeploy (server started again) verifies it; a target whose SSM status
event is lost is reconciled through GetCommandInvocation and ends VERIFIED."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import install_commands_on, run_scenario, state_entered, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    report, data = run_scenario("restore-paths.yaml")
    first, second = report["events"]
    return {"report": report, "data": data, "first": first, "second": second,
            "old": report["certificates"]["web"]["serial_initial"],
            "new": report["certificates"]["web"]["serial_final"]}


def test_server_that_dies_after_reload_is_restored_and_the_restore_named(run: dict[str, Any]) -> None:
    t = target_by_id(run["first"])["dies-1"]
    assert (t["outcome"], t["reason"]) == ("ROLLED_BACK", "unreachable-after-install"), t
    assert t["served_serial_before"] == run["old"]
    assert t["served_serial_after"] is None  # the process is gone: nothing answers
    assert t["restore_attempted"] and t["restore_result"] == "previous files restored", t
    snap = run["data"]["targets"]["dies-1"]
    assert snap["fullchain_initial"] != snap["fullchain_final"]  # the force redeploy installed the new one
    history = run["first"]["history"]
    assert state_entered(history, "RollbackTarget"), "the restore ran in the first rollout"
    [message] = run["first"]["sns_messages"]
    [line] = [x for x in message["Message"].splitlines() if x.startswith("- dies-1 ")]
    assert "ROLLED_BACK (unreachable-after-install)" in line
    assert "restore attempted: previous files restored" in line
    assert "old certificate NOT served: the target does not answer" in line


def test_lost_status_event_is_reconciled_through_get_command_invocation(run: dict[str, Any]) -> None:
    t = target_by_id(run["first"])["event-lost-1"]
    assert t["outcome"] == "VERIFIED", t
    assert t["served_serial_after"] == run["new"]
    history = run["first"]["history"]
    reconciled = [e for e in history if e["type"] == "TaskStateExited"
                  and e["stateExitedEventDetails"]["name"] == "ReconcileInstall"]
    assert len(reconciled) == 1, "only the target whose event was lost is reconciled"
    assert '"state":"SUCCEEDED"' in reconciled[0]["stateExitedEventDetails"]["output"].replace(" ", "")
    [install] = install_commands_on(run["data"], "event-lost-1")[:1]
    assert install["Invocations"][0]["Status"] == "Success"  # SSM knew all along
    assert not target_by_id(run["first"])["event-lost-1"]["restore_attempted"]


def test_healthy_target_is_untouched_by_its_neighbours(run: dict[str, Any]) -> None:
    t = target_by_id(run["first"])["healthy-1"]
    assert t["outcome"] == "VERIFIED" and t["served_serial_after"] == run["new"]
    assert run["first"]["outcome"] == "PARTIAL"


def test_force_redeploy_after_the_server_is_back_verifies_every_target(run: dict[str, Any]) -> None:
    second = run["second"]
    assert second["outcome"] == "ROLLED_OUT", [(t["id"], t["outcome"], t["reason"]) for t in second["targets"]]
    for t in second["targets"]:
        assert (t["outcome"], t["served_serial_after"]) == ("VERIFIED", run["new"]), t
    dies = target_by_id(second)["dies-1"]
    assert dies["served_serial_before"] == run["old"]  # the restore had put the old files back
    assert run["data"]["targets"]["dies-1"]["served_serial_final"] == run["new"]
