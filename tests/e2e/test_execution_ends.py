"""Issue 10, items 6 and 7 on the local cloud: a throttled idempotency write is retried and the
rollout proceeds (and the claim still stops a later duplicate), and every execution that ends
other than SUCCEEDED is notified exactly once: an aborted one by NotifyAbnormalEnd (on the
state machine's own "Step Functions Execution Status Change" event), a FAILED rollout by Notify
only."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cert_rollout.localcloud.scenario import ScenarioRunner, state_outputs

from .conftest import explain, run_scenario, task_failures_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HEALTH = "events/eventbridge/health-renewal-completed.json"
ACM = "events/eventbridge/acm-certificate-available-renewal.json"
CERT = {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}}


def messages_about(runner: ScenarioRunner, rollout_id: str, settle: float = 4.0, timeout: float = 40.0,
                   want: int = 1) -> list[dict[str, Any]]:
    """The rollout topic's messages about ``rollout_id``, once ``want`` arrived (bounded) and
    ``settle`` more seconds passed without another (NotifyAbnormalEnd runs asynchronously)."""
    assert runner.cloud is not None
    deadline = time.time() + timeout

    def about() -> list[dict[str, Any]]:
        return [m for m in runner.cloud.sns_messages()  # type: ignore[union-attr]
                if (m.get("MessageAttributes") or {}).get("rolloutId", {}).get("Value") == rollout_id]

    while len(about()) < want and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(settle)
    return about()


def test_a_throttled_idempotency_write_is_retried_and_a_later_duplicate_is_still_already_deployed() -> None:
    report, data = run_scenario({
        "name": "throttled-claim", "certificates": CERT, "targets": [{"id": "web-1", "certificate": "web"}],
        "steps": [{"renew": "web"},
                  # 3 = the SDK's own attempts (adapters/aws.py): one claim write fails for the handler
                  {"inject_error": {"operation": "UpdateItem", "table": "IdempotencyTable",
                                    "code": "ProvisionedThroughputExceededException", "times": 3}},
                  {"event": HEALTH, "certificate": "web"},
                  {"event": ACM, "certificate": "web", "expect": "ALREADY_DEPLOYED"}]})
    first, duplicate = report["events"]
    assert (first["status"], first["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), explain(first)
    assert [t["outcome"] for t in first["targets"]] == ["VERIFIED"]
    failures = task_failures_of(first["history"], "ValidateEvent")
    assert [f["error"] for f in failures] == ["AwsThrottled"], failures
    assert "ProvisionedThroughputExceededException" in failures[0]["cause"]
    assert (duplicate["status"], duplicate["outcome"]) == ("SUCCEEDED", "ALREADY_DEPLOYED"), explain(duplicate)
    [validated] = state_outputs(duplicate["history"], "ValidateEvent")
    assert validated["rollout"]["duplicateOf"] == first["executionArn"].rsplit(":", 1)[-1]
    installs = [c for c in data["ssm_commands"] if c["Parameters"].get("Action") in (["install"], "install")]
    assert len(installs) == 1


def test_an_aborted_rollout_is_notified_once_and_its_claim_does_not_block_the_serial() -> None:
    def after(runner: ScenarioRunner, report: dict[str, Any]) -> dict[str, Any]:
        aborted = report["events"][0]
        rollout_id = aborted["executionArn"].rsplit(":", 1)[-1]
        about = messages_about(runner, rollout_id)
        assert runner.cloud is not None
        return {"messages": about, "status_events": list(runner.cloud.status_events)}

    report, data = run_scenario({
        "name": "aborted", "certificates": CERT, "targets": [{"id": "web-1", "certificate": "web"}],
        "steps": [{"renew": "web"},
                  {"event": HEALTH, "certificate": "web", "wait": False, "expect": "EXECUTION_ABORTED"},
                  # stopped while ExportCertificate runs: moto's interpreter ends an execution
                  # stopped inside the inline Map FAILED (States.Runtime), not ABORTED as AWS does
                  {"stop": 2, "after_state": "ExportCertificate"},
                  {"sleep": 2},
                  # a later event for the same serial: the aborted execution's claim is taken over
                  {"event": ACM, "certificate": "web"}]}, while_running=after)
    aborted, retried = report["events"]
    assert aborted["status"] == "ABORTED" and aborted["outcome"] == "EXECUTION_ABORTED", explain(aborted)
    [message] = data["while_running"]["messages"]
    assert message["Subject"].startswith("[EXECUTION_ABORTED]")
    assert aborted["executionArn"] in message["Message"]
    assert data["certificate_arns"]["web"] in message["Message"]
    assert "stopped (StopExecution)" in message["Message"]
    assert [e["detail"]["status"] for e in data["while_running"]["status_events"]
            if e["detail"]["executionArn"] == aborted["executionArn"]] == ["ABORTED"]
    # the next event for the same serial is not a duplicate of the aborted rollout
    assert (retried["status"], retried["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), explain(retried)


def test_a_failed_rollout_is_notified_once_by_notify_only() -> None:
    def after(runner: ScenarioRunner, report: dict[str, Any]) -> dict[str, Any]:
        entry = report["events"][0]
        assert runner.cloud is not None
        rollout_id = entry["executionArn"].rsplit(":", 1)[-1]
        deadline = time.time() + 30  # NotifyAbnormalEnd ran (and found Notify's marker)
        logs: list[str] = []
        while time.time() < deadline:
            logs = [line for group, lines in runner.cloud.function_logs().items()
                    if "NotifyAbnormalEnd" in group for line in lines]
            if any("already notified" in line for line in logs):
                break
            time.sleep(0.5)
        return {"messages": messages_about(runner, rollout_id), "logs": logs}

    report, data = run_scenario({
        "name": "failed-target", "certificates": CERT,
        "targets": [{"id": "web-1", "certificate": "web"}, {"id": "down-1", "certificate": "web", "fault": "down"}],
        "steps": [{"renew": "web"}, {"event": HEALTH, "certificate": "web", "expect": "PARTIAL"}]},
        while_running=after)
    [entry] = report["events"]
    assert (entry["status"], entry["outcome"]) == ("FAILED", "PARTIAL"), explain(entry)
    [message] = data["while_running"]["messages"]
    assert message["MessageId"] == entry["notification"]["messageId"]  # Notify's, not a second one
    assert any("already notified" in line for line in data["while_running"]["logs"])
