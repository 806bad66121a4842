"""verifyFrom node (logic/verify_node.py and its call sites) on the fakes: VerifyTarget judges
the node's evidence with no handshake of its own, InstallTarget and RecordTargetOutcome do not
probe such a target, and the evidence rides from the installer's ROLLOUT_RESULT through
CommandCallback into $.installCommand."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from rollout_core.contracts import CommandResult, IterationState, ServedEvidence, VerifyInput
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.callback import CommandEvent, complete_waiting_task
from rollout_core.logic.commands import command_status, send_target_command
from rollout_core.logic.outcome import record_outcome
from rollout_core.logic.verify import verify_target
from rollout_core.logic.verify_node import node_served_after, parse_served, verify_from_node_evidence
from rollout_core.settings import InstallSettings, RecordSettings, VerifySettings

from tests.fakes.world import ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import pki

SETTINGS = VerifySettings(inventory_table="inventory", verify_timeout_seconds=60, probe_timeout_seconds=1.5)
SINCE = "2026-11-28T06:05:00Z"
NOW = datetime(2026, 11, 28, 6, 5, 10, tzinfo=UTC)
NEW_PKI, OLD = pki(), pki("RSA_2048", label="old").leaf_cert
NEW = NEW_PKI.leaf_cert
NEW_SERIAL, OLD_SERIAL = canonical_serial(NEW.serial_number), canonical_serial(OLD.serial_number)


def hexder(cert: Any) -> str:
    return cert.public_bytes(Encoding.DER).hex()


ANCHOR = NEW_PKI.root_pem  # the export's trustAnchor


def evidence(leaf: Any = NEW, probes: int = 3, **changes: Any) -> ServedEvidence:
    serial = canonical_serial(leaf.serial_number)
    sent = [leaf, NEW_PKI.intermediate_cert] if leaf is NEW else [leaf]
    data = {"chain": [hexder(c) for c in sent], "chainComplete": True, "serialsSeen": [serial] * 3, "probes": probes,
            "required": 3, "attempts": 3, "error": None, "at": "2026-11-28T06:05:09Z"}
    return ServedEvidence.model_validate({**data, **changes})


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1", verifyFrom="node"))
    return fakes


def judge(served: ServedEvidence | None, expected: str = NEW_SERIAL):
    return verify_from_node_evidence(served, expected, since=SINCE, target=target("web-1", verifyFrom="node"),
                                     settings=SETTINGS, anchors=(NEW_PKI.root_cert,), now=NOW)


def test_the_new_serial_served_three_times_in_a_row_is_verified() -> None:
    result = judge(evidence())
    assert (result.state, result.servedSerial, result.detail) == ("VERIFIED", NEW_SERIAL, None)


def test_serials_are_compared_as_integers() -> None:
    assert judge(evidence(), expected=str(NEW.serial_number)).state == "VERIFIED"  # decimal, as moto gives it
    assert judge(evidence(), expected=NEW_SERIAL.upper()).state == "VERIFIED"


def test_the_old_serial_is_not_serving_with_what_the_node_saw() -> None:
    result = judge(evidence(OLD, probes=0))
    assert result.state == "NOT_SERVING" and result.servedSerial == OLD_SERIAL
    assert f"expected serial {NEW_SERIAL}, served {OLD_SERIAL}" in result.detail
    assert "from node mi-0123456789abcdef0 to 127.0.0.1:8443 (SNI web.internal.example)" in result.detail


def test_the_new_serial_not_served_stably_is_not_serving() -> None:
    result = judge(evidence(probes=1, serialsSeen=[NEW_SERIAL, OLD_SERIAL, NEW_SERIAL]))
    assert result.state == "NOT_SERVING" and "served 1 of 3 handshakes in a row" in result.detail


def test_no_answer_from_the_node_is_unreachable_never_waiting() -> None:
    result = judge(evidence(chain=[], serialsSeen=[], probes=0, error="127.0.0.1:8443: ConnectionRefusedError"))
    assert result.state == "UNREACHABLE" and "ConnectionRefusedError" in result.detail
    assert judge(None).state == "UNREACHABLE" and "no probe evidence" in judge(None).detail


def test_the_leaf_is_read_from_the_chain_not_from_the_nodes_serial_list() -> None:
    # the node's own serial reading disagrees: the DER leaf decides
    assert judge(evidence(OLD, probes=3, serialsSeen=[NEW_SERIAL] * 3)).state == "NOT_SERVING"
    # without a readable chain the serial may be the node's reading, but a client's checks cannot pass
    result = judge(evidence(chain=["zz"], serialsSeen=[NEW_SERIAL] * 3))
    assert (result.state, result.reason, result.servedSerial) == ("NOT_SERVING", "chain-invalid", NEW_SERIAL)


def test_the_nodes_chain_gets_the_same_checks_as_a_lambda_probe() -> None:
    # the leaf without its intermediate: what a client with the private root refuses
    result = judge(evidence(chain=[hexder(NEW)]))
    assert (result.state, result.reason) == ("NOT_SERVING", "chain-invalid")
    assert "sent 1 certificate" in result.detail
    # a name the leaf does not carry (the target's SNI decides, as for the Lambda's probe)
    result = verify_from_node_evidence(evidence(), NEW_SERIAL, since=SINCE, settings=SETTINGS,
                                       target=target("web-1", verifyFrom="node", sni="other.internal.example"),
                                       anchors=(NEW_PKI.root_cert,), now=NOW)
    assert (result.state, result.reason) == ("NOT_SERVING", "hostname-mismatch")
    # another CA's root: the chain does not build to this certificate's anchor
    other = pki("RSA_2048", label="other").root_cert
    result = verify_from_node_evidence(evidence(), NEW_SERIAL, since=SINCE, settings=SETTINGS,
                                       target=target("web-1", verifyFrom="node"), anchors=(other,), now=NOW)
    assert (result.state, result.reason) == ("NOT_SERVING", "chain-invalid")
    assert judge(evidence()).chainLength == 2


def test_a_chain_the_node_could_not_read_whole_is_never_verified() -> None:
    result = judge(evidence(chainComplete=False))
    assert (result.state, result.reason) == ("NOT_SERVING", "chain-invalid") and "3.10" in result.detail
    result = judge(evidence(chainTruncated=1))
    assert (result.state, result.reason) == ("NOT_SERVING", "chain-invalid") and "truncated" in result.detail


def test_verify_target_judges_a_node_target_without_any_handshake(w: World) -> None:
    result = verify_target(ARN, "web-1", NEW_SERIAL, SINCE, ANCHOR, settings=SETTINGS, now=NOW, inventory=w.inventory,
                           probe=w.probe, node_evidence=evidence())
    assert result.state == "VERIFIED"
    assert w.probe.calls == []


def test_a_lambda_target_ignores_node_evidence_and_probes(w: World) -> None:
    w.inventory.add(target("web-2", port=8444))
    w.probe.script("127.0.0.1", 8444, OLD)
    result = verify_target(ARN, "web-2", NEW_SERIAL, SINCE, ANCHOR, settings=SETTINGS, now=NOW, inventory=w.inventory,
                           probe=w.probe, node_evidence=evidence())
    assert result.state == "WAITING" and len(w.probe.calls) == 1


def test_install_sends_the_probe_settings_and_does_not_probe_first(w: World) -> None:
    settings = InstallSettings(inventory_table="inventory", rollout_table="rollouts", install_document="CertInstall",
                               installer_layer_arn="arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1",
                               command_timeout_seconds=300, probe_timeout_seconds=2.5)
    ref = send_target_command("install", ARN, "web-1", ROLLOUT_ID, NEW_SERIAL, "arn:aws:secretsmanager:eu-west-1:"
                              "123456789012:secret:acm-cert-rollout/x-AbCdEf", "v-1", settings=settings,
                              inventory=w.inventory, commands=w.commands, waiting_tasks=w.waiting_tasks,
                              probe=w.probe, installer=w.installer, task_token="token-1")
    assert w.probe.calls == [] and ref.servedSerialBefore is None
    [(_, args)] = [c for c in w.commands.calls if c[0] == "send"]
    config = json.loads(base64.b64decode(args["parameters"]["TargetConfig"]))
    assert config["verify"] == {"host": "127.0.0.1", "port": 8443, "sni": "web.internal.example", "probes": 3}
    # the ROLLOUT_RESULT's evidence reaches the waiting task, with the node's served-before
    served = evidence().model_dump() | {"chainTruncated": 0}
    line = "ROLLOUT_RESULT " + json.dumps({"status": "ok", "stage": "reload", "servedBefore": OLD_SERIAL,
                                           "served": served})
    w.commands.finish(ref.commandId, "Success", stdout=line + "\n")
    event = {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
             "detail": {"command-id": ref.commandId, "instance-id": ref.instanceId, "status": "Success"}}
    complete_waiting_task(CommandEvent.model_validate(event), commands=w.commands, waiting_tasks=w.waiting_tasks,
                          callbacks=w.callbacks)
    [(_, output)] = w.callbacks.succeeded
    result = CommandResult.model_validate(output)
    assert result.servedSerialBefore == OLD_SERIAL and result.served is not None
    assert result.served.chain == [hexder(NEW), hexder(NEW_PKI.intermediate_cert)] and result.served.before == OLD_SERIAL
    # and the ASL's VerifyTarget payload accepts it as it is
    VerifyInput.model_validate({"targetId": "web-1", "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "trustAnchor": ANCHOR,
                                "expectedSerial": NEW_SERIAL, "since": SINCE, "served": output["served"]})


def test_a_lambda_target_sends_no_probe_settings(w: World) -> None:
    assert "verify" not in target("web-2").install_settings()
    assert target("web-2").verifyFrom == "lambda"


def test_evidence_parsing_never_raises() -> None:
    assert parse_served({"status": "ok"}) is None
    assert parse_served(None) is None
    bad = parse_served({"served": {"probes": -1}})
    assert bad is not None and "unreadable" in (bad.error or "") and bad.chain == []
    assert parse_served({"served": "text"}).error.startswith("the node's probe evidence is unreadable")
    newer = parse_served({"served": {"probes": 3, "required": 3, "somethingNew": 1}, "servedBefore": "0a"})
    assert newer is not None and newer.before == "0a" and newer.probes == 3


def test_command_status_carries_the_evidence_of_a_successful_rollback() -> None:
    line = "ROLLOUT_RESULT " + json.dumps({"status": "ok", "stage": "rollback",
                                           "served": {"serialsSeen": [OLD_SERIAL], "probes": 3, "required": 3}})
    status = command_status("c-1", "mi-0123456789abcdef0", action="rollback",
                            invocation={"Status": "Success", "StandardOutputContent": line})
    assert status.served is not None and status.served.serialsSeen == [OLD_SERIAL]


def test_record_outcome_takes_the_served_serial_after_from_the_node(w: World) -> None:
    settings = RecordSettings(inventory_table="inventory", rollout_table="rollouts", probe_timeout_seconds=1.0)
    base = {"targetId": "web-1", "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "expectedSerial": NEW_SERIAL,
            "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/x-AbCdEf",
            "secretVersionId": "v-1", "taskTimeoutSeconds": 1260, "trustAnchor": ANCHOR}
    stale = evidence(OLD, probes=0).model_dump()
    state = IterationState.model_validate(base | {
        "installCommand": {"state": "SUCCEEDED", "served": stale},
        "verify": {"state": "NOT_SERVING", "since": SINCE, "pollIntervalSeconds": 5, "detail": "expected ..."},
        "rollbackCommand": {"state": "SUCCEEDED", "filesChanged": "yes",
                            "served": {"serialsSeen": [NEW_SERIAL, OLD_SERIAL], "probes": 3, "required": 3}}})
    record = record_outcome(state, settings=settings, inventory=w.inventory, records=w.records, probe=w.probe,
                            now=NOW)
    assert record.outcome.value == "ROLLED_BACK" and record.servedSerialAfter == OLD_SERIAL
    assert w.probe.calls == []
    assert node_served_after(IterationState.model_validate(base)) is None
