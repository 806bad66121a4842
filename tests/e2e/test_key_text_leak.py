"""Text-form private keys (issue 11, item 5): a test command that prints the installed key with
``openssl pkey -text -noout`` (fault prints-key-text) leaves the rollout successful and the key's
text out of the SSM output and the report (the installer redacts it), with a clean leak check;
the same text planted afterwards on each surface is found there. A test command that writes the
text to a file in the node's working directory (fault leaves-key-text) bypasses every redaction:
the leak check finds that file (so its clean result above means something)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from rollout_core.domain.key_text import KEY_TEXT_REDACTED, colon_hex_digits, private_key_text_labels

from cert_rollout.localcloud.leaks import collect_surfaces, scan
from cert_rollout.localcloud.scenario import ScenarioRunner

from .conftest import explain, install_commands_on, run_scenario, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def scenario(fault: str) -> dict[str, Any]:
    return {"name": fault,
            "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "RSA_2048"}},
            "targets": [{"id": "web-1", "certificate": "web", "fault": fault}],
            "steps": [{"renew": "web"},
                      {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}]}


def key_text(key_file: Path) -> str:
    openssl = shutil.which("openssl")
    assert openssl, "openssl not installed"
    return subprocess.run([openssl, "pkey", "-in", str(key_file), "-text", "-noout"], capture_output=True,
                          check=True, text=True, timeout=30).stdout


def spki(pem: bytes) -> bytes:
    """A private key's public key (DER SubjectPublicKeyInfo): the same key in any PEM form."""
    return serialization.load_pem_private_key(pem, password=None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def shows_the_key(text: str, needles: list[tuple[str, str]]) -> list[str]:
    """The text-form labels of the registered keys ``text`` shows by value, and any private label."""
    forms = colon_hex_digits(text) + "|" + text.lower()
    return sorted({label for label, window in needles if window in forms}) + private_key_text_labels(text)


def plant_key_text_and_rescan(runner: ScenarioRunner, report: dict[str, Any]) -> dict[str, Any]:
    """With the cloud still up: the installed key's text form planted on each surface, then scanned."""
    cloud = runner.cloud
    assert cloud is not None and runner.targets is not None
    target = runner.targets.targets["web-1"]
    installed = (target.directory / "privkey.pem").read_bytes()
    text = key_text(target.directory / "privkey.pem")
    arns = [a for e in report["events"] for a in e.get("executionArns", [])]
    planted: dict[str, str] = {}
    sns = cloud.client("sns")
    planted["sns"] = "message " + sns.publish(TopicArn=cloud.outputs["RolloutTopicArn"], Subject="planted",
                                              Message=f"test output:\n{text}")["MessageId"]
    cloud.client("dynamodb").put_item(TableName=cloud.outputs["InventoryTableName"], Item={
        "certificateArn": {"S": "arn:aws:acm:eu-west-1:123456789012:certificate/planted"},
        "targetId": {"S": "planted-1"}, "note": {"S": text}})
    logs, group = cloud.client("logs"), f"/aws/lambda/{cloud.function_name('InstallTargetFunction')}"
    logs.create_log_stream(logGroupName=group, logStreamName="planted")
    logs.put_log_events(logGroupName=group, logStreamName="planted",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": text}])
    history_arn = cloud.start_execution({"planted": text})
    cloud.wait_for_execution(history_arn, timeout=120)
    planted["history"] = history_arn.rsplit(":", 1)[-1]
    from moto.ssm.models import ssm_backends

    [invocation] = ssm_backends[cloud.account_id][cloud.region]._commands[0].invocations
    invocation["StandardErrorContent"] = str(invocation.get("StandardErrorContent", "")) + text
    planted["ssm"] = f"command {ssm_backends[cloud.account_id][cloud.region]._commands[0].command_id} output"
    after = scan(collect_surfaces(cloud, [*arns, history_arn]), cloud.secrets)
    return {"installed_registered": spki(installed) in {spki(p) for p in cloud.secrets.key_pems},
            "needles": cloud.secrets.text_form_needles(), "after": [f.as_dict() for f in after],
            "planted": planted}


@pytest.fixture(scope="module")
def printed() -> dict[str, Any]:
    report, data = run_scenario(scenario("prints-key-text"), while_running=plant_key_text_and_rescan)
    return {"report": report, "data": data, "entry": report["events"][0], **data["while_running"]}


def test_a_test_command_printing_the_key_does_not_stop_the_rollout(printed: dict[str, Any]) -> None:
    entry = printed["entry"]
    assert entry["outcome"] == "ROLLED_OUT", explain(entry)
    assert target_by_id(entry)["web-1"]["outcome"] == "VERIFIED"
    assert printed["report"]["leak_check"]["findings"] == []  # (run_scenario requires it too)
    assert printed["report"]["leak_check"]["scanned"]["report"] == 1
    assert printed["installed_registered"], "the installed key is not one the leak check searches for"


def test_the_printed_key_text_is_redacted_from_the_ssm_output(printed: dict[str, Any]) -> None:
    [command] = install_commands_on(printed["data"], "web-1")
    [invocation] = command["Invocations"]
    output = invocation["StandardOutputContent"] + invocation["StandardErrorContent"]
    result = json.loads(invocation["StandardOutputContent"].strip().splitlines()[-1][len("ROLLOUT_RESULT "):])
    assert "Private-Key: (2048 bit, 2 primes)" in result["serverOutput"]  # the command did print the key
    assert "prime1:\n    " + KEY_TEXT_REDACTED in result["serverOutput"]
    assert "configuration test is successful" in result["serverOutput"]
    assert shows_the_key(output, printed["needles"]) == []


def test_the_key_text_is_absent_from_the_report(printed: dict[str, Any]) -> None:
    report = {k: v for k, v in printed["report"].items() if k != "leak_check"}
    assert shows_the_key(json.dumps(report, default=str), printed["needles"]) == []


@pytest.mark.parametrize("surface", ["sns", "dynamodb", "logs", "history", "ssm"])
def test_the_key_text_planted_on_a_surface_is_found_there(printed: dict[str, Any], surface: str) -> None:
    found = [f for f in printed["after"] if f["surface"] == surface]
    whats = {f["what"] for f in found}
    assert "text-form private key block" in whats, printed["after"]
    assert any(w.startswith("private key #") and "(text form, prime1)" in w for w in whats), found
    where = printed["planted"].get(surface)
    if where:
        assert any(where in f["where"] for f in found), found
    assert "prime1:\n" not in json.dumps(printed["after"])  # findings name the kind, never the text


@pytest.fixture(scope="module")
def left_on_node() -> dict[str, Any]:
    def node_dir(runner: ScenarioRunner, _report: dict[str, Any]) -> str:
        assert runner.cloud is not None and runner.targets is not None
        return str(runner.cloud.fleet.nodes[runner.targets.targets["web-1"].instance_id].workdir)

    report, data = run_scenario(scenario("leaves-key-text"), while_running=node_dir, expect_leaks=True)
    return {"report": report, "entry": report["events"][0], "workdir": data["while_running"]}


def test_key_text_left_in_a_file_on_the_node_fails_the_leak_check(left_on_node: dict[str, Any]) -> None:
    entry = left_on_node["entry"]
    assert entry["outcome"] == "ROLLED_OUT", explain(entry)  # nothing in the rollout itself saw the text
    findings = left_on_node["report"]["leak_check"]["findings"]
    assert findings, "the leak check missed the key text left on the node"
    left = f"node file {Path(left_on_node['workdir']) / 'key-text.txt'}"
    assert {(f["surface"], f["where"]) for f in findings} == {("node_files", left)}, findings
    whats = {f["what"] for f in findings}
    assert "text-form private key block" in whats
    for value in ("privateExponent", "prime1", "prime2"):  # found by value: the rollout's own key
        assert any(w.startswith("private key #") and w.endswith(f"(text form, {value})") for w in whats), findings
