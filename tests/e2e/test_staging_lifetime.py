"""Issue 11, item 1 on the local cloud: each rollout stages its bundle in its own secret whose
resource policy names exactly the rollout's target nodes, and no staged secret outlives its
rollout: after a successful rollout, a failing one and an aborted execution (NotifyAbnormalEnd),
ListSecrets under the staged prefix is empty.

The policy is read as moto received it (PutResourcePolicy, recorded in this process: the local
cloud's moto server runs here) and with GetResourcePolicy right after: the secret is deleted at
the rollout's end, so it cannot be read afterwards. Whether the policy's condition keys deny the
other nodes is not something moto evaluates: tests/unit/test_staging_policy.py states the policy.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.secretsmanager.models import SecretsManagerBackend
from rollout_core.domain.staging import EC2_SOURCE_KEY, SSM_SOURCE_KEY, node_source_arn

from cert_rollout.localcloud.scenario import ScenarioRunner

from .conftest import explain, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

HEALTH = "events/eventbridge/health-renewal-completed.json"
FORCE = {"certificateArn": "${CertificateArn}", "force": True}
CERTS = {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"},
         "api": {"domain": "api.internal.example", "key_algorithm": "EC_prime256v1"}}
STAGED = "cert-rollout/staged/"


def test_each_rollout_stages_for_its_own_nodes_and_nothing_staged_outlives_a_rollout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[str, dict[str, Any]]] = []
    original = SecretsManagerBackend.put_resource_policy

    def recording(self: SecretsManagerBackend, secret_id: str, policy: str) -> tuple[str, str]:
        answer = original(self, secret_id, policy)
        # GetResourcePolicy right after: what any later reader of the secret gets
        received.append((secret_id, json.loads(json.loads(self.get_resource_policy(secret_id))["ResourcePolicy"])))
        return answer

    monkeypatch.setattr(SecretsManagerBackend, "put_resource_policy", recording)

    def after(runner: ScenarioRunner, report: dict[str, Any]) -> list[str]:
        assert runner.cloud is not None
        sm = runner.cloud.client("secretsmanager")
        listed = sm.list_secrets(Filters=[{"Key": "name", "Values": [STAGED]}])["SecretList"]
        return [s["Name"] for s in listed if s["Name"].startswith(STAGED)]

    report, data = run_scenario({
        "name": "staging-lifetime", "certificates": CERTS,
        "targets": [{"id": "web-1", "certificate": "web"}, {"id": "web-2", "certificate": "web"},
                    {"id": "api-1", "certificate": "api"},
                    {"id": "api-down", "certificate": "api", "fault": "down"}],
        "steps": [{"renew": "web"}, {"event": HEALTH, "certificate": "web"},
                  {"renew": "api"}, {"event": HEALTH, "certificate": "api", "expect": "PARTIAL"},
                  {"input": FORCE, "certificate": "web", "wait": False, "expect": "EXECUTION_ABORTED"},
                  # stopped once the bundle is staged: NotifyAbnormalEnd deletes it
                  {"stop": 5, "after_state": "InstallTargets"},
                  {"sleep": 3},
                  {"input": FORCE, "certificate": "web"}]}, while_running=after)
    ok, failing, aborted, last = report["events"]
    assert (ok["status"], ok["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), explain(ok)
    assert (failing["status"], failing["outcome"]) == ("FAILED", "PARTIAL"), explain(failing)
    # moto's interpreter ends an execution stopped inside the inline Map FAILED (States.Runtime), not
    # ABORTED as AWS does (tests/e2e/test_execution_ends.py); NotifyAbnormalEnd handles both
    assert aborted["status"] in ("ABORTED", "FAILED"), explain(aborted)
    assert (last["status"], last["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), explain(last)

    # no staged secret remains after any of these ends
    assert data["while_running"] == []

    # each staged secret was this rollout's own, readable only from its certificate's nodes
    nodes = {tid: t["instance_id"] for tid, t in data["targets"].items()}
    arns = data["certificate_arns"]
    expected = {"web": [nodes["web-1"], nodes["web-2"]], "api": [nodes["api-1"], nodes["api-down"]]}
    for entry, cert in ((ok, "web"), (failing, "api"), (last, "web")):
        rollout_id = entry["executionArn"].rsplit(":", 1)[-1]
        name = f"{STAGED}{arns[cert].rsplit('/', 1)[-1]}/{rollout_id}"
        policies = [p for n, p in received if n == name]
        assert policies, f"no resource policy was put on {name}"
        (statement,) = policies[0]["Statement"]
        assert (statement["Effect"], statement["Action"]) == ("Deny", "secretsmanager:GetSecretValue")
        want: dict[str, set[str]] = {}
        for instance_id in expected[cert]:
            key, arn = node_source_arn(instance_id, partition="aws", region="eu-west-1", account="123456789012")
            want.setdefault(key, set()).add(arn)
        got = {k: set(v) for k, v in statement["Condition"]["ArnNotEquals"].items()}
        assert got == want and set(got) <= {EC2_SOURCE_KEY, SSM_SOURCE_KEY}, (cert, got)
