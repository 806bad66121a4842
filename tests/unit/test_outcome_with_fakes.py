"""RecordTargetOutcome (logic/outcome.py record_outcome) and Notify (logic/notify.py notify)
on the fakes: one record per target, the inventory marked only on VERIFIED, one message per
execution listing every target."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rollout_core.adapters.errors import AwsServiceUnavailable, AwsThrottled
from rollout_core.contracts import IterationState, RolloutState
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.notify import notify
from rollout_core.logic.outcome import record_outcome
from rollout_core.models import Decision, RolloutOutcome, TargetOutcome
from rollout_core.settings import RecordSettings

from tests.fakes.world import ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import pki

SETTINGS = RecordSettings(inventory_table="inventory", rollout_table="rollouts", probe_timeout_seconds=1.0)
NOW = datetime(2026, 11, 28, 6, 10, tzinfo=UTC)
NEW, OLD = pki().leaf_cert, pki("RSA_2048", label="old").leaf_cert
NEW_SERIAL, OLD_SERIAL = canonical_serial(NEW.serial_number), canonical_serial(OLD.serial_number)


def state(target_id: str = "web-1", **paths: Any) -> dict[str, Any]:
    """An iteration state as the Map builds it (contracts.IterationState) with the steps' results."""
    return {"targetId": target_id, "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "expectedSerial": NEW_SERIAL,
            "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/x-AbCdEf",
            "secretVersionId": "v-1", "taskTimeoutSeconds": 1260, "trustAnchor": pki().root_pem, **paths}


VERIFIED = {"installCommand": {"state": "SUCCEEDED", "endpoint": "127.0.0.1:8443", "servedSerialBefore": "01:02"},
            "verify": {"state": "VERIFIED", "since": NOW.isoformat(), "pollIntervalSeconds": 5}}
NOT_SERVING_ROLLED_BACK = {"installCommand": {"state": "SUCCEEDED"},
                           "verify": {"state": "NOT_SERVING", "detail": "expected ..., served ...",
                                      "since": NOW.isoformat(), "pollIntervalSeconds": 5},
                           "rollbackCommand": {"state": "SUCCEEDED"}}


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1", port=8443))
    fakes.inventory.add(target("web-2", port=8444))
    return fakes


def record(w: World, s: dict[str, Any]):
    return record_outcome(IterationState.model_validate(s), settings=SETTINGS, inventory=w.inventory, records=w.records, probe=w.probe, now=NOW)


def test_verified_target_is_recorded_and_marked_deployed(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, NEW)
    result = record(w, state(**VERIFIED))
    assert (result.outcome, result.servedSerialBefore, result.servedSerialAfter) == (
        TargetOutcome.VERIFIED, "01:02", NEW_SERIAL)
    stored = w.records.records[(ROLLOUT_ID, "web-1")]
    assert stored["outcome"] == "VERIFIED" and stored["recordedAt"] == NOW.isoformat()
    assert "reason" not in stored  # None values are not written
    item = w.inventory.items[(ARN, "web-1")]
    assert (item["lastDeployedSerial"], item["lastOutcome"], item["lastDeployedAt"]) == (
        NEW_SERIAL, "VERIFIED", NOW.isoformat())


def test_rolled_back_target_is_recorded_but_not_marked(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, OLD)
    result = record(w, state(**NOT_SERVING_ROLLED_BACK))
    assert (result.outcome, result.reason) == (TargetOutcome.ROLLED_BACK, "not-serving-new-serial")
    assert result.servedSerialAfter == OLD_SERIAL
    assert result.endpoint == "127.0.0.1:8443"  # from the inventory when the install output has none
    assert "mark_deployed" not in w.inventory.operations()


def test_a_step_that_raised_is_failed_with_its_reason(w: World) -> None:
    error = {"Error": "NodeNotManaged", "Cause": '{"errorMessage": "mi-0123456789abcdef0: not managed"}'}
    result = record(w, state(error=error))
    assert (result.outcome, result.reason) == (TargetOutcome.FAILED, "undeliverable")
    assert "not managed" in result.detail


def test_unknown_target_and_invalid_settings_are_still_recorded(w: World) -> None:
    w.inventory.add({"certificateArn": ARN, "targetId": "web-bad", "host": "127.0.0.1", "port": "443"})
    gone = record(w, state("web-gone", error={"Error": "TargetNotFound", "Cause": "gone"}))
    bad = record(w, state("web-bad", error={"Error": "ValidationError", "Cause": "port"}))
    assert (gone.reason, bad.reason) == ("target-not-in-inventory", "invalid-target-settings")
    assert gone.servedSerialAfter is None and bad.servedSerialAfter is None
    assert {(ROLLOUT_ID, "web-gone"), (ROLLOUT_ID, "web-bad")} <= set(w.records.records)
    assert w.probe.calls == []


def test_unreachable_target_after_the_rollout_has_no_served_serial(w: World) -> None:
    result = record(w, state(**VERIFIED))  # nothing scripted: connection refused
    assert result.outcome is TargetOutcome.VERIFIED and result.servedSerialAfter is None


def test_a_removed_target_is_not_recreated_by_mark_deployed(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, NEW)
    w.inventory.delete(ARN, "web-1")
    record(w, state(**VERIFIED))
    assert (ARN, "web-1") not in w.inventory.items


def test_a_failing_record_write_propagates_by_name(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(record: Any) -> None:
        raise AwsServiceUnavailable("PutItem", "InternalServerError", "try again")

    monkeypatch.setattr(w.records, "put", unavailable)
    with pytest.raises(AwsServiceUnavailable):
        record(w, state(**VERIFIED))
    assert "mark_deployed" not in w.inventory.operations()


# --- notify ---------------------------------------------------------------------------------------

ROLLOUT = {"decision": "ROLLOUT", "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "serial": NEW_SERIAL,
           "targetIds": ["web-1", "web-2", "web-3"], "domainName": "web.internal.example"}


def publish(w: World, rollout: dict[str, Any]):
    return notify(RolloutState.model_validate(rollout), records=w.records, notifications=w.notifications,
                  staging=w.staging, secret_prefix="acm-cert-rollout")


def test_rollout_notification_lists_every_target_and_a_missing_record_is_failed(w: World) -> None:
    w.probe.script("127.0.0.1", 8443, NEW)
    w.probe.script("127.0.0.1", 8444, OLD)
    record(w, state("web-1", **VERIFIED))
    record(w, state("web-2", **NOT_SERVING_ROLLED_BACK))
    result = publish(w, ROLLOUT)
    assert (result.outcome, result.verified, result.rolledBack, result.failed, result.targetCount) == (
        RolloutOutcome.PARTIAL, 1, 1, 1, 3)
    [message] = w.notifications.messages
    assert message["attributes"] == {"outcome": "PARTIAL", "certificateArn": ARN, "rolloutId": ROLLOUT_ID}
    assert len(message["subject"]) <= 100 and "1/3 targets serve" in message["subject"]
    body = message["message"]
    assert "- web-3  FAILED (outcome-not-recorded)" in body
    assert f"now serving {OLD_SERIAL}" in body
    assert result.messageId == "message-1"


def test_all_verified_is_rolled_out(w: World) -> None:
    for target_id, port in (("web-1", 8443), ("web-2", 8444)):
        w.probe.script("127.0.0.1", port, NEW)
        record(w, state(target_id, **VERIFIED))
    result = publish(w, {**ROLLOUT, "targetIds": ["web-1", "web-2"]})
    assert result.outcome is RolloutOutcome.ROLLED_OUT
    assert w.notifications.messages[0]["subject"].startswith("[ROLLED_OUT] web.internal.example: 2/2")


@pytest.mark.parametrize(("rollout", "outcome", "subject"), [
    ({"decision": Decision.RENEWAL_FAILED.value, "reason": "PCA_ACCESS_DENIED", "daysToExpiry": 44},
     RolloutOutcome.RENEWAL_FAILED, "renewal needs action"),
    ({"decision": Decision.NO_TARGETS.value}, RolloutOutcome.NO_TARGETS, "no target is registered"),
    ({"decision": Decision.EXPORT_FAILED.value, "error": {"Error": "ExportMismatch", "Cause": "key"}},
     RolloutOutcome.FAILED, "export failed, nothing installed"),
])
def test_rollouts_without_targets_are_notified_without_reading_records(
        w: World, rollout: dict[str, Any], outcome: RolloutOutcome, subject: str) -> None:
    result = publish(w, {"certificateArn": ARN, "rolloutId": ROLLOUT_ID, "serial": NEW_SERIAL, **rollout})
    assert result.outcome is outcome and result.targetCount == 0
    assert subject in w.notifications.messages[0]["subject"]
    assert w.records.operations() == ["mark_notified"]  # no outcome record read


def test_notify_marks_the_rollout_notified_after_publishing(w: World) -> None:
    publish(w, {"decision": "NO_TARGETS", "certificateArn": ARN, "rolloutId": ROLLOUT_ID})
    marker = w.records.markers[ROLLOUT_ID]
    assert (marker.by, marker.outcome, marker.message_id) == ("Notify", "NO_TARGETS", "message-1")
    assert w.notifications.messages[0]["attributes"]["rolloutId"] == ROLLOUT_ID


def test_a_marker_that_cannot_be_written_does_not_fail_notify(w: World) -> None:
    w.records.fail_next["mark_notified"] = AwsThrottled("PutItem", "ProvisionedThroughputExceededException", "slow")
    result = publish(w, {"decision": "NO_TARGETS", "certificateArn": ARN, "rolloutId": ROLLOUT_ID})
    assert result.messageId == "message-1" and len(w.notifications.messages) == 1
    assert w.records.markers[ROLLOUT_ID].by == "Notify"  # the second try wrote it


def test_a_failing_publish_propagates_by_name(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(subject: str, message: str, attributes: Any) -> str:
        raise AwsServiceUnavailable("Publish", "InternalError", "try again")

    monkeypatch.setattr(w.notifications, "publish", unavailable)
    with pytest.raises(AwsServiceUnavailable):
        publish(w, {"decision": "NO_TARGETS", "certificateArn": ARN, "rolloutId": ROLLOUT_ID})
