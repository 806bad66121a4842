"""Issue 15, item 5, on the local cloud: an AWS Health "due to expire" notice for a certificate
whose targets already serve ACM's serial (no newer serial) ends SUCCEEDED in ExpiryNotified
with an EXPIRY_NOTICE message in SNS (when it expires, days left, the targets that hold it);
no install command is sent and no staged secret is created. The same notice while a target
records an older serial than ACM's is a rollout (the renewal has happened).

Staged secrets are seen as moto receives them (CreateSecret, recorded in this process: the
local cloud's moto server runs here), as tests/e2e/test_staging_lifetime.py does.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.secretsmanager.models import SecretsManagerBackend
from rollout_core.domain.expiry import days_left, format_not_after

from cert_rollout.localcloud.scenario import ScenarioRunner

from .conftest import commands_on, explain, install_commands_on, run_scenario, state_entered

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

RENEWED = "events/eventbridge/health-renewal-completed.json"
DUE = "events/eventbridge/health-due-to-expire.json"
STAGED = "cert-rollout/staged/"


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    created: list[str] = []
    original = SecretsManagerBackend.create_secret

    def recording(self: SecretsManagerBackend, *args: Any, **kwargs: Any) -> Any:
        created.append(str(kwargs.get("name", args[0] if args else "")))
        return original(self, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(SecretsManagerBackend, "create_secret", recording)

    def not_after(runner: ScenarioRunner, _report: dict[str, Any]) -> dict[str, datetime]:
        assert runner.cloud is not None
        acm = runner.cloud.client("acm")
        return {name: acm.describe_certificate(CertificateArn=arn)["Certificate"]["NotAfter"]
                for name, arn in runner.certificate_arns.items()}

    started = datetime.now(UTC)
    try:
        report, data = run_scenario({
            "name": "expiry-notice",
            "certificates": {"expiring": {"domain": "expiring.internal.example"},
                             "renewed": {"domain": "renewed.internal.example"}},
            "targets": [{"id": "exp-1", "certificate": "expiring"}, {"id": "exp-2", "certificate": "expiring"},
                        # records an older serial than ACM's: ACM holds a newer one
                        {"id": "ren-1", "certificate": "renewed",
                         "inventory_overrides": {"lastDeployedSerial": "01:02:03", "lastOutcome": "VERIFIED"}}],
            "steps": [{"renew": "expiring"},
                      {"event": RENEWED, "certificate": "expiring"},                        # 2 ROLLED_OUT
                      {"event": DUE, "certificate": "expiring", "expect": "EXPIRY_NOTICE"},  # 3 notice only
                      {"event": DUE, "certificate": "renewed"}]},                            # 4 ROLLED_OUT
            while_running=not_after)
    finally:
        patch.undo()
    return {"report": report, "data": data, "by_step": {e["step"]: e for e in report["events"]},
            "arns": data["certificate_arns"], "created": created, "started": started, "ended": datetime.now(UTC),
            "not_after": data["while_running"]}


def execution_name(entry: dict[str, Any]) -> str:
    return str(entry["executionArn"].rsplit(":", 1)[-1])


def test_due_to_expire_without_a_newer_serial_notifies_the_expiry_and_installs_nothing(run: dict[str, Any]) -> None:
    first, notice = run["by_step"][2], run["by_step"][3]
    # The first rollout records ACM's serial on each target it verified. Under heavy CPU load a
    # node's bundle fetch can time out (a FAILED target records no serial): the notice is then
    # still one without a newer serial, and its message says how many targets record none.
    assert first["decision"] == "ROLLOUT", explain(first)
    assert (notice["decision"], notice["outcome"], notice["status"]) == ("EXPIRY_NOTICE", "EXPIRY_NOTICE",
                                                                          "SUCCEEDED"), explain(notice)
    assert state_entered(notice["history"], "ExpiryNotified")
    for state in ("ExportCertificate", "AcquireLease", "InstallTargets"):
        assert not state_entered(notice["history"], state), state
    assert notice["targets"] == []  # no target outcome: nothing was attempted
    # one install per target: the first rollout's; the notice sent no command at all
    for tid in ("exp-1", "exp-2"):
        assert len(install_commands_on(run["data"], tid)) == 1, tid
    assert [c for c in run["data"]["ssm_commands"] if execution_name(notice) in c["Comment"]] == []
    assert len(commands_on(run["data"], "exp-1")) == 1


def test_the_notice_stages_no_secret(run: dict[str, Any]) -> None:
    certificate_id = run["arns"]["expiring"].rsplit("/", 1)[-1]
    staged = [n for n in run["created"] if n.startswith(f"{STAGED}{certificate_id}/")]
    assert staged == [f"{STAGED}{certificate_id}/{execution_name(run['by_step'][2])}"], run["created"]


def test_the_expiry_message_says_when_days_left_and_which_targets(run: dict[str, Any]) -> None:
    notice = run["by_step"][3]
    arn = run["arns"]["expiring"]
    messages = [m for m in run["data"]["sns_messages"]
                if m["MessageAttributes"].get("rolloutId", {}).get("Value") == execution_name(notice)]
    [message] = messages
    assert message["MessageAttributes"]["outcome"]["Value"] == "EXPIRY_NOTICE"
    assert message["MessageAttributes"]["certificateArn"]["Value"] == arn
    text = message["Message"]
    not_after = run["not_after"]["expiring"]
    found = re.search(r"The certificate expires at (.+ UTC), (\d+) days left\.", text)
    assert found, text
    assert found[1] == format_not_after(not_after)
    # Notify counted from a moment within the run: whole days, UTC
    assert days_left(not_after, run["ended"]) <= int(found[2]) <= days_left(not_after, run["started"])
    assert "2 still hold this certificate (inventory; none records a newer serial): exp-1, exp-2" in text
    unverified = [t["id"] for t in run["by_step"][2]["targets"] if t["outcome"] != "VERIFIED"]
    note = f"Note:        {len(unverified)} of 2 targets record no deployed serial"
    assert (note in text) == bool(unverified), (unverified, text)
    assert "renewal has NOT" in text and "private CA" in text


def test_due_to_expire_while_acm_holds_a_newer_serial_rolls_it_out(run: dict[str, Any]) -> None:
    entry = run["by_step"][4]
    assert (entry["decision"], entry["outcome"], entry["status"]) == ("ROLLOUT", "ROLLED_OUT",
                                                                       "SUCCEEDED"), explain(entry)
    assert [t["outcome"] for t in entry["targets"]] == ["VERIFIED"]
    assert len(install_commands_on(run["data"], "ren-1")) == 1
