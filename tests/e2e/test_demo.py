"""The demo: one certificate, three targets, renewed, the Health event goes through the rule."""

from __future__ import annotations

import pytest

from cert_rollout.localcloud.scenario import demo_scenario

from .conftest import explain, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_demo_rolls_renewed_certificate_out_to_every_target_and_notifies_once() -> None:
    report, data = run_scenario(demo_scenario(3).model_dump(exclude={"base_dir"}))

    [entry] = report["events"]
    assert entry["status"] == "SUCCEEDED"
    assert entry["outcome"] == "ROLLED_OUT", explain(entry)
    assert entry["decision"] == "ROLLOUT"
    expected = entry["expected_serial"]
    assert expected == report["certificates"]["web"]["serial_final"]
    assert expected != report["certificates"]["web"]["serial_initial"]

    assert sorted(t["id"] for t in entry["targets"]) == ["web-1", "web-2", "web-3"]
    for t in entry["targets"]:
        assert t["outcome"] == "VERIFIED", t
        assert t["served_serial_after"] == expected, t
        assert t["served_serial_before"] == report["certificates"]["web"]["serial_initial"], t
        assert t["served_serial_before"] != expected, t
        # our own TLS probe (SNI, configured port) agrees: the new serial is served
        assert data["targets"][t["id"]]["served_serial_final"] == expected

    assert len(entry["sns_messages"]) == 1
    assert len(data["sns_messages"]) == 1
    message = entry["sns_messages"][0]
    assert message["MessageAttributes"]["outcome"]["Value"] == "ROLLED_OUT"
    for tid in ("web-1", "web-2", "web-3"):
        assert f"{tid} " in message["Message"] and "VERIFIED" in message["Message"]

    history = entry["history"]
    assert history[0]["type"] == "ExecutionStarted"
    assert history[-1]["type"] == "ExecutionSucceeded"
