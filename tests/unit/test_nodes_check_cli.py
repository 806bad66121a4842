"""`cert-rollout nodes check` (cert_rollout/commands/nodes.py), its parts without a cloud: the
parameters it sends pass the install document's own checks (SSM's allowedValues/allowedPattern,
as the local cloud applies them), the probe secret is under the staged prefix the node role may
read, and each way a node can fail becomes a named reason in its row."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from cert_rollout.commands.nodes import _jobs, check_parameters, evaluate, probe_secret_arn
from cert_rollout.localcloud.nodes import NodeFleet
from tests.unit.test_install_document import document

SHA = "A" * 43 + "="
URL = "https://layers.example/installer.zip?X-Amz-Signature=abc"


def _invocation(result: dict[str, Any] | None, status: str = "Failed") -> dict[str, Any]:
    out = "" if result is None else "ROLLOUT_RESULT " + json.dumps(result) + "\n"
    return {"Status": status, "StandardOutputContent": out}


def test_check_parameters_pass_the_documents_own_validation() -> None:
    probe = probe_secret_arn("aws", "eu-west-1", "123456789012", "cert-rollout")
    config = base64.b64encode(json.dumps({"files": []}).encode()).decode()
    values = NodeFleet.validate_parameters(document(), {k: [v] for k, v in check_parameters(
        probe, config, URL, SHA, 120).items()})
    assert values["Action"] == "check" and values["CommandTimeout"] == "24"


def test_probe_secret_is_a_fresh_name_under_the_staged_prefix() -> None:
    a, b = (probe_secret_arn("aws-cn", "cn-north-1", "123456789012", "cert-rollout") for _ in range(2))
    assert a != b
    # template.yaml TargetNodePolicy: secret:${SecretPrefix}/staged/*
    assert re.fullmatch(r"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:cert-rollout/staged/"
                        r"preflight/[0-9a-f]{32}", a), a


def test_a_node_without_inventory_targets_gets_a_targetless_check() -> None:
    [job] = _jobs([], ["mi-0123456789abcdef0"])
    assert job["targetId"] is None
    assert json.loads(base64.b64decode(job["config"])) == {"files": []}


ONLINE = {"ping": "Online"}


def test_rows_name_the_reason_a_node_would_fail() -> None:
    job = {"instanceId": "i-0abc", "targetId": "web-1", "certificateArn": "arn", "commandId": "c1"}
    ok = {"checks": [{"check": "python", "ok": True}, {"check": "bundle-fetch", "ok": True}], "python": "3.11.2"}
    assert evaluate(job, ONLINE, _invocation(ok, "Success"))["reasons"] == []
    failing = {"checks": [{"check": "bundle-fetch", "ok": False, "reason": "bundle-access-denied"},
                          {"check": "reload-command", "ok": False, "reason": "command-missing"}]}
    row = evaluate(job, ONLINE, _invocation(failing))
    assert (row["ok"], row["reasons"]) == (False, ["bundle-access-denied", "command-missing"])
    bootstrap = {"action": "check", "reason": "python-too-old", "error": "python3 3.6.8 is older than 3.8"}
    row = evaluate(job, ONLINE, _invocation(bootstrap))
    assert row["reasons"] == ["python-too-old"] and row["checks"][0]["check"] == "python"
    assert evaluate(job, {"ping": "ConnectionLost"}, _invocation(None, "Pending"))["reasons"] == ["agent-offline"]
    assert evaluate(job, None, None)["reasons"] == ["agent-not-registered"]
    assert evaluate(job, ONLINE, _invocation(None, "Failed"))["reasons"] == ["no-result (Failed)"]
