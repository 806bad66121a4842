"""A certificate with more targets than one execution's history can hold is refused up front,
by name and with a notification, instead of failing half-way without one."""

import pytest

from tests.e2e.conftest import run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_more_targets_than_max_targets_per_rollout_is_rejected_with_a_notification() -> None:
    report, data = run_scenario({
        "name": "too-many-targets",
        "parameters": {"MaxTargetsPerRollout": "2"},
        "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [{"id": f"web-{i}", "certificate": "web"} for i in range(1, 4)],
        "steps": [{"renew": "web"}, {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}],
    })
    [entry] = report["events"]
    assert (entry["status"], entry["outcome"]) == ("FAILED", "REJECTED")
    failed = [e for e in entry["history"] if e["type"] == "TaskFailed"]
    assert failed and failed[0]["taskFailedEventDetails"]["error"] == "TooManyTargets"
    [message] = entry["sns_messages"]
    assert "TooManyTargets" in message["Message"] and "MaxTargetsPerRollout" in message["Message"]
    assert data["ssm_commands"] == []
