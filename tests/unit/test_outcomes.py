"""Per-target outcome rules (logic.outcome) and the notification text (logic.notify)."""

import json
from typing import Any

import pytest
from pydantic import ValidationError
from rollout_core.contracts import IterationState, RolloutState, TargetLine
from rollout_core.logic.commands import installer_result, redact
from rollout_core.logic.notify import format_message, rollout_outcome, target_lines
from rollout_core.logic.outcome import classify, restore_result
from rollout_core.models import RolloutOutcome, TargetOutcome

from tests.unit.pki_fixtures import pki

ITEM = {"targetId": "web-1", "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
        "rolloutId": "r1", "expectedSerial": "0a:bc", "secretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:s",
        "secretVersionId": "v1", "taskTimeoutSeconds": 1260, "trustAnchor": pki().root_pem}
VERIFY = {"since": "2026-11-28T06:01:41.207Z", "pollIntervalSeconds": 5}


def iteration(**steps: Any) -> IterationState:
    """An iteration state as RecordTargetOutcome receives it: the Map item plus each step's result."""
    return IterationState.model_validate({**ITEM, **steps})


def lines_of(*records: dict[str, Any]) -> list[TargetLine]:
    return [TargetLine.model_validate(r) for r in records]


def test_verified_target_is_verified():
    state = iteration(installCommand={"state": "SUCCEEDED"}, verify={**VERIFY, "state": "VERIFIED"})
    assert classify(state)[:2] == (TargetOutcome.VERIFIED, None)


def test_failed_install_that_restored_files_is_rolled_back():
    state = iteration(installCommand={"state": "FAILED", "reason": "install-failed", "filesChanged": "restored",
                                      "detail": "stage reload; reload failed: bind error"})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.ROLLED_BACK, "install-failed")
    assert "reload failed" in detail
    assert restore_result(state) == (True, "previous files restored by the installer")


def test_failed_fetch_is_failed_not_rolled_back():
    state = iteration(installCommand={"state": "FAILED", "reason": "install-failed", "filesChanged": "no"})
    assert classify(state)[:2] == (TargetOutcome.FAILED, "install-failed")
    assert restore_result(state) == (False, None)


def test_timed_out_and_undeliverable_commands_that_changed_nothing_are_distinct_reasons():
    timed = iteration(installCommand={"state": "TIMED_OUT", "reason": "command-timed-out", "filesChanged": "no"})
    undeliverable = iteration(installCommand={"state": "UNDELIVERABLE", "reason": "undeliverable",
                                              "filesChanged": "no"})
    assert classify(timed)[:2] == (TargetOutcome.FAILED, "command-timed-out")
    assert classify(undeliverable)[:2] == (TargetOutcome.FAILED, "undeliverable")


@pytest.mark.parametrize(("install", "cause"), [
    ({"state": "TIMED_OUT", "reason": "command-timed-out", "filesChanged": "unknown"}, "command-timed-out"),
    ({"state": "FAILED", "reason": "install-failed", "filesChanged": "yes",
      "detail": "stage reload; restore failed: no backup"}, "install-failed"),
    ({"state": "CANCELLED", "reason": "command-cancelled", "filesChanged": "unknown"}, "command-cancelled"),
])
def test_install_that_may_have_changed_files_is_rolled_back_with_its_cause(install: dict[str, Any], cause: str):
    state = iteration(installCommand=install, rollbackCommand={"state": "SUCCEEDED", "filesChanged": "yes"})
    assert classify(state)[:2] == (TargetOutcome.ROLLED_BACK, cause)
    assert restore_result(state) == (True, "previous files restored")


def test_rollback_with_nothing_to_restore_is_failed_with_the_cause():
    state = iteration(installCommand={"state": "TIMED_OUT", "reason": "command-timed-out", "filesChanged": "unknown"},
                      rollbackCommand={"state": "SUCCEEDED", "filesChanged": "no", "detail": "nothing to restore"})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.FAILED, "command-timed-out")
    assert "nothing to restore" in detail
    assert restore_result(state) == (True, "nothing to restore")


def test_unreachable_before_and_after_install_fails_without_rollback():
    state = iteration(installCommand={"state": "SUCCEEDED", "servedSerialBefore": None},
                      verify={**VERIFY, "state": "UNREACHABLE", "detail": "refused"})
    assert classify(state)[:2] == (TargetOutcome.FAILED, "unreachable")
    assert restore_result(state) == (False, None)


def test_unreachable_after_answering_before_is_rolled_back():
    state = iteration(installCommand={"state": "SUCCEEDED", "servedSerialBefore": "01:02"},
                      verify={**VERIFY, "state": "UNREACHABLE", "detail": "connection refused"},
                      rollbackCommand={"state": "SUCCEEDED", "filesChanged": "yes"})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.ROLLED_BACK, "unreachable-after-install")
    assert "connection refused" in detail


def test_verification_that_could_not_run_is_rolled_back():
    cause = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 30.00 seconds"})
    state = iteration(installCommand={"state": "SUCCEEDED", "servedSerialBefore": "01:02"},
                      verify={"since": VERIFY["since"]}, verifyError={"Error": "Sandbox.Timedout", "Cause": cause},
                      rollbackCommand={"state": "SUCCEEDED", "filesChanged": "yes"})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.ROLLED_BACK, "verify-failed")
    assert "Task timed out" in detail


def test_stale_target_rolled_back_keeps_expected_and_served_serial():
    state = iteration(installCommand={"state": "SUCCEEDED"},
                      verify={**VERIFY, "state": "NOT_SERVING", "detail": "expected serial 0a:bc, served 01:02"},
                      rollbackCommand={"state": "SUCCEEDED"})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.ROLLED_BACK, "not-serving-new-serial")
    assert "0a:bc" in detail and "01:02" in detail


def test_failed_rollback_is_failed_with_both_details():
    state = iteration(installCommand={"state": "SUCCEEDED"},
                      verify={**VERIFY, "state": "NOT_SERVING", "detail": "served 01:02"},
                      rollbackCommand={"state": "FAILED", "reason": "rollback-failed", "detail": "no backup"})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.FAILED, "rollback-failed")
    assert detail.startswith("not-serving-new-serial: served 01:02") and "restore failed: no backup" in detail


def test_rollback_step_that_raised_is_failed_and_names_the_error():
    cause = json.dumps({"errorType": "NodeNotManaged", "errorMessage": "mi-1: not managed"})
    state = iteration(installCommand={"state": "TIMED_OUT", "reason": "command-timed-out", "filesChanged": "unknown"},
                      rollbackError={"Error": "NodeNotManaged", "Cause": cause})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.FAILED, "rollback-failed")
    assert detail.startswith("command-timed-out") and "restore not run: NodeNotManaged: mi-1: not managed" in detail


def test_caught_step_error_names_the_reason():
    cause = json.dumps({"errorType": "NodeNotManaged", "errorMessage": "mi-1: not managed"})
    state = iteration(error={"Error": "NodeNotManaged", "Cause": cause})
    outcome, reason, detail = classify(state)
    assert (outcome, reason) == (TargetOutcome.FAILED, "undeliverable")
    assert "mi-1: not managed" in detail


def test_rollout_outcome_partial_when_some_verified():
    lines = lines_of({"targetId": "a", "outcome": "VERIFIED"}, {"targetId": "b", "outcome": "FAILED"})
    assert rollout_outcome(lines) == RolloutOutcome.PARTIAL
    assert rollout_outcome(lines[:1]) == RolloutOutcome.ROLLED_OUT
    assert rollout_outcome(lines[1:]) == RolloutOutcome.FAILED


def test_target_without_record_is_reported_failed():
    rollout = RolloutState(decision="ROLLOUT", rolloutId="r1", targetIds=["a", "b"])
    lines = target_lines(rollout, lines_of({"targetId": "a", "outcome": "VERIFIED", "rolloutId": "r1"}))
    assert [line.targetId for line in lines] == ["a", "b"]
    assert lines[1] == TargetLine(targetId="b", outcome=TargetOutcome.FAILED, reason="outcome-not-recorded")


def test_message_lists_every_target_with_its_outcome():
    rollout = RolloutState(decision="ROLLOUT", certificateArn="arn:x", domainName="web.internal.example",
                           serial="0a:bc", rolloutId="r1", targetIds=["web-1", "web-2"])
    lines = lines_of({"targetId": "web-1", "outcome": "VERIFIED", "endpoint": "h:1", "servedSerialAfter": "0a:bc"},
                     {"targetId": "web-2", "outcome": "ROLLED_BACK", "reason": "not-serving-new-serial", "detail": "x"})
    subject, body = format_message(RolloutOutcome.PARTIAL, rollout, lines)
    assert subject.startswith("[PARTIAL] web.internal.example: 1/2")
    assert "web-1" in body and "VERIFIED" in body and "web-2" in body and "ROLLED_BACK" in body


@pytest.mark.parametrize(("after", "said"), [
    ("01:02", "old certificate served again (01:02)"),
    (None, "old certificate NOT served: the target does not answer (it served 01:02)"),
    ("0a:bc", "old certificate NOT served: it serves 0a:bc, not 01:02"),
])
def test_message_says_whether_the_old_certificate_is_served_again(after: str | None, said: str):
    rollout = RolloutState(decision="ROLLOUT", certificateArn="arn:x", serial="0a:bc", rolloutId="r1",
                           targetIds=["web-1"])
    lines = lines_of({"targetId": "web-1", "outcome": "ROLLED_BACK", "reason": "unreachable-after-install",
                      "servedSerialBefore": "01:02", "servedSerialAfter": after, "restoreAttempted": True,
                      "restoreResult": "previous files restored"})
    _, body = format_message(RolloutOutcome.FAILED, rollout, lines)
    [line] = [x for x in body.splitlines() if x.startswith("- web-1 ")]
    assert "unreachable-after-install" in line
    assert "restore attempted: previous files restored" in line
    assert said in line


def test_message_says_when_no_restore_was_attempted():
    rollout = RolloutState(decision="ROLLOUT", certificateArn="arn:x", serial="0a:bc", rolloutId="r1",
                           targetIds=["web-1"])
    lines = lines_of({"targetId": "web-1", "outcome": "FAILED", "reason": "unreachable"})
    _, body = format_message(RolloutOutcome.FAILED, rollout, lines)
    assert "[no restore attempted]" in body


def test_renewal_failed_message_names_reason_and_days():
    rollout = RolloutState(decision="RENEWAL_FAILED", rolloutId="r1", certificateArn="arn:x",
                           reason="PCA_ACCESS_DENIED", daysToExpiry=44)
    subject, body = format_message(RolloutOutcome.RENEWAL_FAILED, rollout, [])
    assert "RENEWAL_FAILED" in subject and "PCA_ACCESS_DENIED" in body and "44" in body


def test_rejected_message_names_the_caught_error():
    cause = json.dumps({"errorType": "ForeignCertificate", "errorMessage": "certificate of account 2"})
    rollout = RolloutState.model_validate({"decision": "REJECTED", "rolloutId": "r1",
                                           "error": {"Error": "ForeignCertificate", "Cause": cause}})
    subject, body = format_message(RolloutOutcome.REJECTED, rollout, [])
    assert subject.startswith("[REJECTED]")
    assert "ForeignCertificate: certificate of account 2" in body
    assert "Certificate: -" in body  # no certificate ARN in a rejection


def test_verification_start_only_is_not_a_verified_target():
    # VerifyTarget raised: $.verify holds only BeginVerification's {since}, the Catch wrote $.error.
    state = iteration(installCommand={"state": "SUCCEEDED"}, verify={"since": VERIFY["since"]},
                      error={"Error": "TargetNotFound", "Cause": "{}"})
    assert classify(state)[:2] == (TargetOutcome.FAILED, "target-not-in-inventory")


def test_iteration_state_refuses_a_field_the_state_machine_does_not_write():
    with pytest.raises(ValidationError, match="installCmd"):
        iteration(installCmd={"state": "SUCCEEDED"})


def test_installer_result_line_is_parsed_and_key_blocks_redacted():
    out = 'noise\nROLLOUT_RESULT {"status": "failed", "stage": "test"}\n'
    assert installer_result(out) == {"status": "failed", "stage": "test"}
    text = "x -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- y"
    assert "MIIE" not in redact(text) and "PRIVATE KEY-----" not in redact(text)


def test_target_settings_too_large_for_the_ssm_parameter_are_refused():
    from rollout_core.models import INSTALL_SETTINGS_MAX_B64, Target

    files = [{"path": f"/etc/ssl/{'d' * 200}/{i}/web.pem", "content": "fullchain", "mode": "0644"} for i in range(30)]
    entry = {"certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x1", "targetId": "web-1",
             "host": "web.internal.example", "port": 443, "server": "nginx", "instanceId": "i-0123456789abcdef0",
             "files": files, "testCommand": ["nginx", "-t"], "reloadCommand": ["nginx", "-s", "reload"]}
    with pytest.raises(ValidationError, match="TargetConfig"):
        Target.model_validate(entry)
    entry["files"] = files[:2]
    assert len(Target.model_validate(entry).install_settings_b64()) <= INSTALL_SETTINGS_MAX_B64
