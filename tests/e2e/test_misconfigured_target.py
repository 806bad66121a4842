"""One misconfigured inventory item fails only its own target (D4), by name."""

import pytest

from tests.e2e.conftest import run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_invalid_target_settings_fail_that_target_only() -> None:
    report, data = run_scenario({
        "name": "misconfigured-target",
        "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [
            {"id": "web-1", "certificate": "web"},
            # a world-readable private key file: refused by the Target model before any install
            {"id": "web-2", "certificate": "web", "inventory_overrides": {
                "files": [{"path": "/tmp/never-written/web-2.key", "content": "key", "mode": "0644"}]}},
        ],
        "steps": [{"renew": "web"}, {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}],
    })
    [entry] = report["events"]
    by_id = {t["id"]: t for t in entry["targets"]}
    assert entry["outcome"] == "PARTIAL" and entry["status"] == "FAILED"
    assert by_id["web-1"]["outcome"] == "VERIFIED"
    assert (by_id["web-2"]["outcome"], by_id["web-2"]["reason"]) == ("FAILED", "invalid-target-settings")
    assert "0644" in by_id["web-2"]["detail"] or "mode" in by_id["web-2"]["detail"]
    assert [c for c in data["ssm_commands"] if "web-2" in c["Comment"]] == []
