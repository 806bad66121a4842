"""Transient AWS errors are retried with backoff and jitter by the state machine; permanent
ones are not (they fail the step at once and the notification says why)."""

from typing import Any

import pytest

from tests.e2e.conftest import run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

EVENT = "events/eventbridge/health-renewal-completed.json"


def _scenario(code: str, times: int) -> dict[str, Any]:
    return {
        "name": f"export-{code}",
        "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [{"id": "web-1", "certificate": "web"}],
        "steps": [{"renew": "web"},
                  {"inject_error": {"operation": "ExportCertificate", "code": code, "times": times}},
                  {"event": EVENT, "certificate": "web"}],
    }


def _export_attempts(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scheduled = [e for e in history if e["type"] == "TaskScheduled"]
    ids = {e["id"] for e in scheduled if "ExportCertificateFunction" in e["taskScheduledEventDetails"]["parameters"]}
    return [e for e in history if e.get("previousEventId") in ids or e["id"] in ids]


# The SDK itself retries throttling (standard mode: 3 attempts per call), so 6 injected
# throttles fail two Lambda invocations; RequestInProgress is not retried by the SDK.
@pytest.mark.parametrize(("code", "times"), [("ThrottlingException", 6), ("RequestInProgressException", 2)])
def test_transient_export_error_is_retried_and_the_rollout_completes(code: str, times: int) -> None:
    report, _ = run_scenario(_scenario(code, times=times))
    [entry] = report["events"]
    assert entry["outcome"] == "ROLLED_OUT", entry.get("error")
    failures = [e for e in entry["history"] if e["type"] == "TaskFailed"
                and e["taskFailedEventDetails"]["error"] in ("AwsThrottled", "AwsRequestInProgress")]
    assert len(failures) == 2, [e["type"] for e in entry["history"]]


def test_permanent_export_error_is_not_retried_and_nothing_is_installed() -> None:
    report, data = run_scenario(_scenario("AccessDeniedException", times=1))
    [entry] = report["events"]
    assert entry["status"] == "FAILED" and entry["outcome"] == "FAILED"
    failures = [e for e in entry["history"] if e["type"] == "TaskFailed"]
    assert [f["taskFailedEventDetails"]["error"] for f in failures] == ["AwsPermanentError"]
    assert data["ssm_commands"] == []
    [message] = entry["sns_messages"]
    assert "AccessDeniedException" in message["Message"] and "Nothing was installed" in message["Message"]
