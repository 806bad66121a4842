"""ValidateEvent (logic/validate.py) on the fakes: the decision rests on DescribeCertificate,
one rollout per (certificate ARN, serial), serials compared as integers (DESIGN.md)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rollout_core.adapters.errors import AwsRequestInProgress, AwsThrottled
from rollout_core.domain.errors import ForeignCertificate, UnsupportedEvent
from rollout_core.domain.serials import parse_serial
from rollout_core.logic.validate import (
    CertificateNotFound,
    CertificateNotIssued,
    CertificateNotPrivate,
    TooManyTargets,
    validate_event,
)
from rollout_core.models import Decision
from rollout_core.settings import ValidateSettings

from tests.fakes.world import ARN, EXECUTION_ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import pki

EVENTS = Path(__file__).resolve().parents[2] / "events" / "statemachine"
SETTINGS = ValidateSettings(inventory_table="inventory", rollout_table="rollouts", idempotency_table="idempotency",
                            max_concurrency=7, command_timeout_seconds=300, max_targets_per_rollout=3)


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def run(w: World, raw: Any, execution_arn: str = EXECUTION_ARN, settings: ValidateSettings = SETTINGS):
    return validate_event(raw, execution_arn, region="eu-west-1", account_id="123456789012", settings=settings,
                          certificates=w.certificates, inventory=w.inventory, claims=w.claims,
                          executions=w.executions, records=w.records)


@pytest.fixture
def w() -> World:
    fakes = world()
    fakes.inventory.add(target("web-1"))
    fakes.inventory.add(target("web-2", port=8444))
    return fakes


def test_renewal_with_targets_is_a_rollout_of_acms_serial(w: World) -> None:
    result = run(w, event("health-renewal-completed.json"))
    assert result.decision is Decision.ROLLOUT
    assert result.serial == w.certificates.serial(ARN)
    assert (result.targetIds, result.rolloutId, result.maxConcurrency) == (["web-1", "web-2"], ROLLOUT_ID, 7)
    assert result.taskTimeoutSeconds == 2 * 300 + 60
    assert result.domainName == "web.internal.example"
    assert w.claims.operations() == ["claim"]


def test_acm_native_event_is_decided_the_same_way(w: World) -> None:
    assert run(w, event("acm-certificate-available-renewal.json")).decision is Decision.ROLLOUT


def test_duplicate_event_for_the_same_serial_is_already_deployed(w: World) -> None:
    first = run(w, event("health-renewal-completed.json"))
    second = run(w, event("acm-certificate-available-renewal.json"), EXECUTION_ARN.replace("rollout-1", "rollout-2"))
    assert first.decision is Decision.ROLLOUT
    assert (second.decision, second.duplicateOf, second.targetIds) == (Decision.ALREADY_DEPLOYED, ROLLOUT_ID, [])


def test_a_claim_still_being_written_is_a_transient_error_not_a_duplicate(w: World) -> None:
    w.claims.in_progress.add((ARN, w.certificates.serial(ARN)))
    with pytest.raises(AwsRequestInProgress):  # retried by ValidateEvent's Retry (rollout.asl.json)
        run(w, event("health-renewal-completed.json"))


SECOND = EXECUTION_ARN.replace("rollout-1", "rollout-2")


@pytest.mark.parametrize("status", ["ABORTED", "TIMED_OUT"])
def test_a_claim_whose_execution_ended_unfinished_is_taken_over(w: World, status: str) -> None:
    run(w, event("health-renewal-completed.json"))
    w.executions.add(EXECUTION_ARN, status)
    w.records.put({"rolloutId": ROLLOUT_ID, "targetId": "web-1", "outcome": "FAILED"})  # stopped half-way
    result = run(w, event("acm-certificate-available-renewal.json"), SECOND)
    assert (result.decision, result.duplicateOf) == (Decision.ROLLOUT, None)
    assert w.claims.claims[(ARN, w.certificates.serial(ARN))][0] == "rollout-2"
    assert w.claims.operations() == ["claim", "claim", "release", "claim"]


def test_a_claim_whose_execution_failed_before_any_target_is_taken_over(w: World) -> None:
    run(w, event("health-renewal-completed.json"))
    w.executions.add(EXECUTION_ARN, "FAILED", error="RolloutFailed")  # e.g. the export failed
    assert run(w, event("acm-certificate-available-renewal.json"), SECOND).decision is Decision.ROLLOUT


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED", "FAILED", None])
def test_a_claim_whose_execution_runs_or_finished_its_targets_stands(w: World, status: str | None) -> None:
    run(w, event("health-renewal-completed.json"))
    if status is not None:  # None: Step Functions no longer knows the execution (retention)
        w.executions.add(EXECUTION_ARN, status)
    w.records.put({"rolloutId": ROLLOUT_ID, "targetId": "web-1", "outcome": "FAILED"})
    result = run(w, event("acm-certificate-available-renewal.json"), SECOND)
    assert (result.decision, result.duplicateOf) == (Decision.ALREADY_DEPLOYED, ROLLOUT_ID)
    assert "release" not in w.claims.operations()


def test_every_target_verified_on_this_serial_is_already_deployed_whatever_the_serial_spelling(w: World) -> None:
    serial_int = parse_serial(w.certificates.serial(ARN))
    # one item written in canonical hex, one in decimal (as moto reports serials): the same integer
    for target_id, spelled in (("web-1", w.certificates.serial(ARN)), ("web-2", str(serial_int))):
        w.inventory.items[(ARN, target_id)].update(lastDeployedSerial=spelled, lastOutcome="VERIFIED")
    result = run(w, event("health-renewal-completed.json"))
    assert result.decision is Decision.ALREADY_DEPLOYED
    assert result.reason == "every target already serves this serial"


def test_one_target_on_another_serial_still_rolls_out(w: World) -> None:
    w.inventory.items[(ARN, "web-1")].update(lastDeployedSerial=w.certificates.serial(ARN), lastOutcome="VERIFIED")
    w.inventory.items[(ARN, "web-2")].update(lastDeployedSerial="01:02:03", lastOutcome="VERIFIED")
    assert run(w, event("health-renewal-completed.json")).decision is Decision.ROLLOUT


def test_unparseable_recorded_serial_is_not_this_serial(w: World) -> None:
    for target_id in ("web-1", "web-2"):
        w.inventory.items[(ARN, target_id)].update(lastDeployedSerial="not a serial", lastOutcome="VERIFIED")
    assert run(w, event("health-renewal-completed.json")).decision is Decision.ROLLOUT


def test_manual_force_rolls_out_again_without_claiming(w: World) -> None:
    run(w, event("health-renewal-completed.json"))
    result = run(w, event("manual-redeploy.json"), EXECUTION_ARN.replace("rollout-1", "manual-1"))
    assert (result.decision, result.reason) == (Decision.ROLLOUT, "target web-2 was rebuilt")
    assert w.claims.operations() == ["claim"]


def test_renewal_failure_reports_acms_reason_not_the_events_prose() -> None:
    w = world()
    w.certificates.add(ARN, pki(), renewal_status="FAILED", renewal_status_reason="PCA_ACCESS_DENIED")
    result = run(w, event("health-renewal-failure.json"))
    assert (result.decision, result.reason) == (Decision.RENEWAL_FAILED, "PCA_ACCESS_DENIED")
    assert result.daysToExpiry is not None
    assert w.inventory.calls == [] and w.claims.calls == []


def test_days_to_expiry_comes_from_not_after_when_the_event_has_none() -> None:
    w = world()
    w.certificates.add(ARN, pki(), renewal_status_reason="PCA_ACCESS_DENIED")
    not_after = pki().leaf_cert.not_valid_after_utc
    result = validate_event(event("health-renewal-failure.json"), EXECUTION_ARN, region="eu-west-1",
                            account_id="123456789012", settings=SETTINGS, certificates=w.certificates,
                            inventory=w.inventory, claims=w.claims, executions=w.executions, records=w.records, now=not_after - timedelta(days=44, hours=1))
    assert result.daysToExpiry == 44


def test_no_targets_is_its_own_decision() -> None:
    w = world()
    result = run(w, event("health-renewal-completed.json"))
    assert (result.decision, result.targetIds) == (Decision.NO_TARGETS, [])
    assert w.claims.calls == []


def test_too_many_targets_is_refused_up_front(w: World) -> None:
    for i in range(3, 5):
        w.inventory.add(target(f"web-{i}", port=8440 + i))
    with pytest.raises(TooManyTargets, match="4 targets; one rollout handles at most 3"):
        run(w, event("health-renewal-completed.json"))
    assert w.claims.calls == []


def test_an_invalid_inventory_item_does_not_stop_the_rollout(w: World) -> None:
    w.inventory.add({"certificateArn": ARN, "targetId": "web-9", "port": "443"})  # the Map fails it alone
    assert run(w, event("health-renewal-completed.json")).targetIds == ["web-1", "web-2", "web-9"]


@pytest.mark.parametrize(("changes", "error"), [
    ({"type": "IMPORTED"}, CertificateNotPrivate),
    ({"status": "EXPIRED"}, CertificateNotIssued),
    ({"status": "REVOKED"}, CertificateNotIssued),
])
def test_certificates_that_cannot_be_rolled_out_are_named_errors(changes: dict[str, Any], error: type) -> None:
    w = world()
    w.certificates.add(ARN, pki(), **changes)
    w.inventory.add(target())
    with pytest.raises(error):
        run(w, event("health-renewal-completed.json"))
    assert w.claims.calls == []


def test_unknown_certificate_is_certificate_not_found() -> None:
    w = World()
    with pytest.raises(CertificateNotFound, match="6f1e2d3c"):
        run(w, event("health-renewal-completed.json"))


def test_events_of_another_account_or_kind_never_reach_acm() -> None:
    w = world()
    foreign = event("health-renewal-completed.json")
    text = json.dumps(foreign).replace("123456789012", "210987654321")
    with pytest.raises(ForeignCertificate):
        run(w, json.loads(text))
    with pytest.raises(UnsupportedEvent):
        run(w, {**foreign, "source": "aws.ec2"})
    assert w.certificates.calls == []


def test_transient_acm_errors_propagate_by_name(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def throttled(arn: str) -> None:
        raise AwsThrottled("DescribeCertificate", "ThrottlingException", "slow down")

    monkeypatch.setattr(w.certificates, "describe", throttled)
    with pytest.raises(AwsThrottled):
        run(w, event("health-renewal-completed.json"))
