"""Triggers (events/ and the cases README, D1): renewal failure and action required, duplicates
and races, redelivery after success, manual redeploy, rejected input, no targets."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import explain, install_commands_on, run_scenario, state_entered, task_failures_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    report, data = run_scenario("events.yaml")
    return {"report": report, "data": data, "by_step": {e["step"]: e for e in report["events"]},
            "arns": data["certificate_arns"]}


def messages_for(run: dict[str, Any], certificate: str) -> list[dict[str, Any]]:
    arn = run["arns"][certificate]
    return [m for m in run["data"]["sns_messages"]
            if m["MessageAttributes"].get("certificateArn", {}).get("Value") == arn]


def commands_of_execution(run: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
    name = entry["executionArn"].rsplit(":", 1)[-1]
    return [c for c in run["data"]["ssm_commands"] if name in c["Comment"]]


RENEWAL_FAILURE_STEPS = pytest.mark.parametrize(
    "step", [2, 3], ids=["health-renewal-failure", "acm-renewal-action-required"])


@RENEWAL_FAILURE_STEPS
def test_renewal_failure_installs_nothing_and_notifies_once(run: dict[str, Any], step: int) -> None:
    entry = run["by_step"][step]
    assert entry["decision"] == "RENEWAL_FAILED", explain(entry)
    assert entry["outcome"] == "RENEWAL_FAILED"
    assert entry["status"] == "SUCCEEDED"
    assert entry["targets"] == []
    [message] = entry["sns_messages"]
    assert message["MessageAttributes"]["outcome"]["Value"] == "RENEWAL_FAILED"
    assert run["arns"]["failing"] in message["Message"]
    assert not state_entered(entry["history"], "ExportCertificate")
    assert commands_of_execution(run, entry) == []
    if step == 3:  # action required: days to expiry from the event (44)
        assert re.search(r"Days to expiry: \d+", message["Message"]), message["Message"]


@pytest.mark.parametrize("step", [
    pytest.param(2, id="health-renewal-failure"),
    pytest.param(3, id="acm-renewal-action-required"),
])
def test_renewal_failure_notification_names_the_reason(run: dict[str, Any], step: int) -> None:
    entry = run["by_step"][step]
    [message] = entry["sns_messages"]
    assert re.search(r"^Reason: +PCA_ACCESS_DENIED", message["Message"], re.M), message["Message"]


def test_renewal_failure_sends_no_ssm_command_and_one_notification_per_event(run: dict[str, Any]) -> None:
    assert install_commands_on(run["data"], "failing-1") == []
    assert len(messages_for(run, "failing")) == 2  # one per failure event


@pytest.mark.parametrize(("step", "error"), [(4, "ForeignCertificate"), (5, "MalformedEvent"),
                                             (18, "CertificateNotManaged")],
                         ids=["foreign-certificate", "malformed-event", "untagged-certificate"])
def test_foreign_or_malformed_input_is_rejected_with_the_named_error(run: dict[str, Any], step: int,
                                                                     error: str) -> None:
    entry = run["by_step"][step]
    assert entry["outcome"] == "REJECTED", explain(entry)
    assert entry["status"] == "FAILED"
    failures = task_failures_of(entry["history"], "ValidateEvent")
    assert failures, [e["type"] for e in entry["history"]]
    assert failures[-1]["error"] == error, failures[-1]
    assert entry["error"]["error"] == "EventRejected"
    [message] = entry["sns_messages"]
    assert message["MessageAttributes"]["outcome"]["Value"] == "REJECTED"
    assert error in message["Message"]
    assert commands_of_execution(run, entry) == []
    assert not state_entered(entry["history"], "ExportCertificate")
    # notified before the execution failed
    notify = state_entered(entry["history"], "Notify")
    assert notify and notify[0] < len(entry["history"]) - 1
    assert entry["history"][-1]["type"] == "ExecutionFailed"


def test_certificate_without_targets_warns(run: dict[str, Any]) -> None:
    entry = run["by_step"][7]
    assert entry["decision"] == "NO_TARGETS", explain(entry)
    assert entry["outcome"] == "NO_TARGETS"
    assert entry["status"] == "SUCCEEDED"
    [message] = entry["sns_messages"]
    assert message["MessageAttributes"]["outcome"]["Value"] == "NO_TARGETS"
    assert "WARNING" in message["Message"]
    assert not state_entered(entry["history"], "ExportCertificate")


def test_same_event_twice_two_seconds_apart_rolls_out_once(run: dict[str, Any]) -> None:
    first, second = run["by_step"][14], run["by_step"][16]
    assert sorted([first["outcome"], second["outcome"]]) == ["ALREADY_DEPLOYED", "ROLLED_OUT"], \
        explain(first) + "\n" + explain(second)
    rolled = first if first["outcome"] == "ROLLED_OUT" else second
    assert rolled["status"] == "SUCCEEDED"
    assert {t["id"]: t["outcome"] for t in rolled["targets"]} == {"dup-1": "VERIFIED", "dup-2": "VERIFIED"}
    for tid in ("dup-1", "dup-2"):
        assert len(install_commands_on(run["data"], tid)) == 1, tid
    assert len(messages_for(run, "dup")) == 1


def test_redelivery_after_success_is_already_deployed(run: dict[str, Any]) -> None:
    assert run["by_step"][9]["outcome"] == "ROLLED_OUT", explain(run["by_step"][9])
    redelivered = run["by_step"][10]
    assert redelivered["outcome"] == "ALREADY_DEPLOYED", explain(redelivered)
    assert redelivered["status"] == "SUCCEEDED"
    assert not state_entered(redelivered["history"], "ExportCertificate")
    assert commands_of_execution(run, redelivered) == []


def test_health_and_acm_event_for_one_serial_roll_out_once(run: dict[str, Any]) -> None:
    health, acm = run["by_step"][9], run["by_step"][11]
    assert health["outcome"] == "ROLLED_OUT", explain(health)
    assert acm["decision"] == "ALREADY_DEPLOYED", explain(acm)
    assert acm["outcome"] == "ALREADY_DEPLOYED"
    assert commands_of_execution(run, acm) == []


def test_manual_redeploy_rolls_out_again(run: dict[str, Any]) -> None:
    first, manual = run["by_step"][9], run["by_step"][12]
    assert manual["outcome"] == "ROLLED_OUT", explain(manual)
    assert manual["status"] == "SUCCEEDED"
    assert manual["expected_serial"] == first["expected_serial"]
    assert [t["outcome"] for t in manual["targets"]] == ["VERIFIED"]
    assert len(install_commands_on(run["data"], "pair-1")) == 2  # first rollout + manual redeploy
    assert len(messages_for(run, "pair")) == 2
