"""Target faults (cases S2, S4, D3, D4): one certificate on seven targets, two healthy and one
per field fault. One failed target never stops the others; the execution fails only after the
notification lists every target's outcome."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import event_index, explain, run_scenario, state_entered, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HEALTHY = ("healthy-1", "healthy-2")
ALL_TARGETS = (*HEALTHY, "down-1", "stale-1", "reload-fails-1", "wrong-cert-1", "agent-offline-1")


@pytest.fixture(scope="module")
def faults() -> dict[str, Any]:
    report, data = run_scenario("faults.yaml")
    [entry] = report["events"]
    return {"report": report, "data": data, "entry": entry, "targets": target_by_id(entry),
            "old": report["certificates"]["web"]["serial_initial"],
            "new": report["certificates"]["web"]["serial_final"]}


def test_failed_targets_make_the_rollout_partial_and_the_execution_failed(faults: dict[str, Any]) -> None:
    entry = faults["entry"]
    assert faults["old"] != faults["new"]
    assert entry["expected_serial"] == faults["new"]
    assert entry["outcome"] == "PARTIAL", explain(entry)
    assert entry["status"] == "FAILED"
    assert entry["error"]["error"] == "RolloutFailed"
    assert sorted(faults["targets"]) == sorted(ALL_TARGETS)


def test_healthy_targets_serve_the_new_serial_despite_failing_neighbours(faults: dict[str, Any]) -> None:
    for tid in HEALTHY:
        t = faults["targets"][tid]
        assert t["outcome"] == "VERIFIED", explain(faults["entry"])
        assert t["served_serial_after"] == faults["new"], t
        assert faults["data"]["targets"][tid]["served_serial_final"] == faults["new"]


def test_down_target_fails_as_unreachable(faults: dict[str, Any]) -> None:
    t = faults["targets"]["down-1"]
    assert (t["outcome"], t["reason"]) == ("FAILED", "unreachable"), t
    assert faults["data"]["targets"]["down-1"]["served_serial_final"] is None


def test_stale_target_is_rolled_back_and_keeps_serving_the_old_serial(faults: dict[str, Any]) -> None:
    t = faults["targets"]["stale-1"]
    assert (t["outcome"], t["reason"]) == ("ROLLED_BACK", "not-serving-new-serial"), t
    snap = faults["data"]["targets"]["stale-1"]
    assert snap["served_serial_final"] == faults["old"]          # our own SNI probe
    assert snap["fullchain_final"] == snap["fullchain_initial"]  # files restored byte for byte


def test_reload_failure_is_rolled_back_with_the_server_error_text(faults: dict[str, Any]) -> None:
    t = faults["targets"]["reload-fails-1"]
    assert (t["outcome"], t["reason"]) == ("ROLLED_BACK", "install-failed"), t
    assert "reload failed" in (t["detail"] or ""), t
    snap = faults["data"]["targets"]["reload-fails-1"]
    assert snap["served_serial_final"] == faults["old"]
    assert snap["fullchain_final"] == snap["fullchain_initial"]


def test_wrong_certificate_is_not_serving_with_expected_and_served_serial(faults: dict[str, Any]) -> None:
    t = faults["targets"]["wrong-cert-1"]
    assert (t["outcome"], t["reason"]) == ("ROLLED_BACK", "not-serving-new-serial"), t
    served = faults["data"]["targets"]["wrong-cert-1"]["served_serial_final"]
    assert served not in (None, faults["new"], faults["old"])
    assert faults["new"] in t["detail"], t
    assert served in t["detail"], t


def test_offline_agent_fails_bounded_as_timed_out_or_undeliverable(faults: dict[str, Any]) -> None:
    t = faults["targets"]["agent-offline-1"]
    assert t["outcome"] == "FAILED", t
    assert t["reason"] in ("command-timed-out", "undeliverable"), t
    # The offline node's command ends by SSM's delivery timeout (30 s), not by waiting for the
    # task's own timeout (2*30+60 s): the whole run, cloud start included, stays well under it.
    assert faults["data"]["wall_seconds"] < 120, faults["data"]["wall_seconds"]


def test_notification_lists_every_target_with_its_outcome(faults: dict[str, Any]) -> None:
    entry = faults["entry"]
    assert len(entry["sns_messages"]) == 1
    assert len(faults["data"]["sns_messages"]) == 1
    message = entry["sns_messages"][0]
    assert message["MessageAttributes"]["outcome"]["Value"] == "PARTIAL"
    lines = message["Message"].splitlines()
    for tid, t in faults["targets"].items():
        [line] = [line for line in lines if line.startswith(f"- {tid} ")]
        assert t["outcome"] in line, line
        if t["reason"]:
            assert t["reason"] in line, line
    assert entry["notification"]["verified"] == 2
    assert entry["notification"]["targetCount"] == len(ALL_TARGETS)


def test_execution_fails_only_after_notifying(faults: dict[str, Any]) -> None:
    history = faults["entry"]["history"]
    assert history[0]["type"] == "ExecutionStarted"
    assert history[-1]["type"] == "ExecutionFailed"
    notify = state_entered(history, "Notify")
    assert len(notify) == 1
    assert notify[0] < event_index(history, "ExecutionFailed")
    assert state_entered(history, "RolloutFailed")
