"""The leak check itself: key material planted on a surface after a clean run is found, on
that surface (so the clean leak check of every other e2e test means something)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cert_rollout.localcloud.leaks import collect_surfaces, scan
from cert_rollout.localcloud.scenario import ScenarioRunner

from .conftest import run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def plant_keys_and_rescan(runner: ScenarioRunner, report: dict[str, Any]) -> dict[str, Any]:
    cloud = runner.cloud
    assert cloud is not None
    assert cloud.secrets.key_pems, "the local cloud registered no private key"
    pem = cloud.secrets.key_pems[-1].decode()  # PKCS#8 PEM, 64-character lines
    body_lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    arns = [a for e in report["events"] for a in e.get("executionArns", [])]
    before = scan(collect_surfaces(cloud, arns), cloud.secrets)

    sns, topic = cloud.client("sns"), cloud.outputs["RolloutTopicArn"]
    planted = {
        "sns-pem": sns.publish(TopicArn=topic, Subject="planted", Message=f"oops\n{pem}")["MessageId"],
        # the key's base64 DER on one line (no PEM markers), as a JSON field would carry it
        "sns-base64-line": sns.publish(TopicArn=topic, Subject="planted",
                                       Message=json.dumps({"key": "".join(body_lines)}))["MessageId"],
        # the PEM body as PEM writes it (64-character lines), markers stripped
        "sns-pem-body": sns.publish(TopicArn=topic, Subject="planted",
                                    Message="key:\n" + "\n".join(body_lines) + "\n")["MessageId"],
    }
    cloud.client("dynamodb").put_item(TableName=cloud.outputs["InventoryTableName"], Item={
        "certificateArn": {"S": "arn:aws:acm:eu-west-1:123456789012:certificate/planted"},
        "targetId": {"S": "planted-1"}, "note": {"S": pem}})

    after = scan(collect_surfaces(cloud, arns), cloud.secrets)
    return {"before": [f.as_dict() for f in before], "after": [f.as_dict() for f in after], "planted": planted}


@pytest.fixture(scope="module")
def planted() -> dict[str, Any]:
    report, data = run_scenario({
        "name": "leak-check",
        "certificates": {"web": {"domain": "web.internal.example"}},
        "targets": [{"id": "web-1", "certificate": "web"}],
        "steps": [{"renew": "web"},
                  {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}],
    }, while_running=plant_keys_and_rescan)
    assert report["events"][0]["outcome"] == "ROLLED_OUT"
    return data["while_running"]


def findings_at(result: dict[str, Any], planted_as: str) -> list[dict[str, str]]:
    where = f"message {result['planted'][planted_as]}"
    return [f for f in result["after"] if f["surface"] == "sns" and f["where"] == where]


def test_leak_check_finds_a_pem_key_planted_in_sns_and_dynamodb(planted: dict[str, Any]) -> None:
    assert planted["before"] == []  # the real run itself is clean
    assert {f["what"] for f in findings_at(planted, "sns-pem")} >= {"PEM private key block"}, planted["after"]
    ddb = [f for f in planted["after"] if f["surface"] == "dynamodb"]
    assert {f["what"] for f in ddb} >= {"PEM private key block"}, planted["after"]
    assert {f["surface"] for f in planted["after"]} == {"sns", "dynamodb"}, planted["after"]
    # findings name the kind of secret, never the secret itself
    assert "PRIVATE KEY-----" not in json.dumps(planted["after"])


def test_leak_check_finds_the_key_base64_without_pem_markers(planted: dict[str, Any]) -> None:
    found = findings_at(planted, "sns-base64-line")
    assert any(f["what"].startswith("private key #") for f in found), planted["after"]


def test_leak_check_finds_the_pem_body_without_markers(planted: dict[str, Any]) -> None:
    found = findings_at(planted, "sns-pem-body")
    assert any(f["what"].startswith("private key #") for f in found), planted["after"]
