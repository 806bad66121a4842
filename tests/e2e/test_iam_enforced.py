"""IAM is enforced on the local cloud (issue 11, item 6): a permission taken out of template.yaml
fails the rollout at the step that needs it, with AccessDenied in the execution history, and the
template as it is rolls out with every request of every function and node evaluated."""

from __future__ import annotations

from typing import Any

import pytest

from cert_rollout.localcloud.scenario import demo_scenario

from .conftest import explain, run_scenario, task_failures_of
from .iam_variants import project_template, without_action, write_variant

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _iam_record(runner: Any, _report: dict[str, Any]) -> dict[str, Any]:
    enforcer = runner.cloud.iam
    return {"enabled": enforcer.enabled, "denials": list(enforcer.denials), "grants": dict(enforcer.grants)}


def test_without_acm_export_certificate_the_rollout_fails_at_export_certificate_with_access_denied(tmp_path):
    template = project_template()
    without_action(template, "ExportCertificateFunction", "acm:ExportCertificate")
    report, data = run_scenario(demo_scenario(1).model_dump(exclude={"base_dir"}), while_running=_iam_record,
                                template=write_variant(template, tmp_path / "variant"))

    [entry] = report["events"]
    assert entry["status"] == "FAILED", explain(entry)
    failures = task_failures_of(entry["history"], "ExportCertificate")
    assert failures, explain(entry)
    assert all("AccessDenied" in (f.get("cause") or "") for f in failures), failures
    assert "acm:ExportCertificate" in failures[0]["cause"]
    # refused by the enforced policy, nothing else: one principal, one action
    denied = {(d.principal, d.action) for d in data["while_running"]["denials"]}
    assert denied == {("function ExportCertificateFunction", "acm:ExportCertificate")}
    # nothing was installed
    assert data["targets"]["web-1"]["fullchain_final"] == data["targets"]["web-1"]["fullchain_initial"]
    assert not [c for c in data["ssm_commands"] if c["Parameters"].get("Action") in (["install"], "install")]


def test_the_demo_rolls_out_with_iam_enforced_and_nothing_denied():
    report, data = run_scenario(demo_scenario(2).model_dump(exclude={"base_dir"}), while_running=_iam_record)

    [entry] = report["events"]
    assert entry["outcome"] == "ROLLED_OUT", explain(entry)
    record = data["while_running"]
    assert record["enabled"] is True
    assert record["denials"] == []
    principals = {label for label, _ in record["grants"]}
    # every step's function, the state machine, the rule and the nodes were evaluated
    for logical_id in ("ValidateEventFunction", "ExportCertificateFunction", "InstallTargetFunction",
                       "CommandCallbackFunction", "VerifyTargetFunction", "RecordOutcomeFunction",
                       "LeaseFunction", "NotifyFunction"):
        assert f"function {logical_id}" in principals, sorted(principals)
    assert ("state machine", "lambda:InvokeFunction") in record["grants"]
    assert any(label.startswith("rule ") for label, action in record["grants"] if action == "states:StartExecution")
    node_reads = {label for label, action in record["grants"]
                  if label.startswith("node ") and action == "secretsmanager:GetSecretValue"}
    assert node_reads == {f"node {t['instance_id']}" for t in data["targets"].values()}
