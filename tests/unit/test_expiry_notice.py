"""Issue 15, item 5: AWS Health "has expired" / "is due to expire" notices are no renewals.

The Health code AWS_ACM_RENEWAL_STATE_CHANGE announces three things (ACM User Guide, "Amazon
EventBridge support for ACM"): the description picks the kind (domain/events.py health_notice),
DescribeCertificate and the inventory decide (logic/validate.py expiry_notice), Notify says when
the certificate expires, in whole days, UTC (domain/expiry.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rollout_core.contracts import RolloutState
from rollout_core.domain.events import RequestKind, health_notice, parse_event
from rollout_core.domain.expiry import days_left, expiry_phrase, format_not_after
from rollout_core.logic.notify import EXPIRY_TARGETS_SHOWN, format_message, notify
from rollout_core.logic.validate import CertificateNotIssued, validate_event
from rollout_core.models import Decision, RolloutOutcome
from rollout_core.settings import ValidateSettings

from tests.fakes.world import ARN, EXECUTION_ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import pki

EVENTS = Path(__file__).resolve().parents[2] / "events" / "statemachine"
REGION, ACCOUNT = "eu-west-1", "123456789012"
SETTINGS = ValidateSettings(inventory_table="inventory", rollout_table="rollouts", idempotency_table="idempotency",
                            max_concurrency=7, command_timeout_seconds=300, max_targets_per_rollout=3)
NOT_AFTER = datetime(2026, 12, 28, 23, 59, 59, tzinfo=UTC)


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def health(description: str | None, language: str = "en_US") -> dict[str, Any]:
    raw = event("health-due-to-expire.json")
    if description is None:
        del raw["detail"]["eventDescription"]
    else:
        raw["detail"]["eventDescription"] = [{"language": language, "latestDescription": description}]
    return raw


# --- which notice: the description picks the kind ----------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("health-renewal-completed.json", RequestKind.RENEWAL_COMPLETED),  # also says "expires on" (the new one)
    ("health-due-to-expire.json", RequestKind.EXPIRY_NOTICE),
    ("health-expired.json", RequestKind.EXPIRY_NOTICE),
    ("health-renewal-failure.json", RequestKind.RENEWAL_FAILED),  # its own code, untouched
])
def test_each_health_sample_is_read_as_what_it_announces(name: str, kind: RequestKind) -> None:
    assert parse_event(event(name), region=REGION, account_id=ACCOUNT).kind is kind


@pytest.mark.parametrize(("text", "kind"), [
    ("AWS Certificate Manager (ACM) has completed the renewal of a private certificate.", RequestKind.RENEWAL_COMPLETED),
    ("Your certificate has been renewed. The new certificate will expire on Dec 1, 2027.", RequestKind.RENEWAL_COMPLETED),
    ("The certificate for web.internal.example HAS EXPIRED.", RequestKind.EXPIRY_NOTICE),
    ("A certificate is due\nto expire on Jan 5, 2027.", RequestKind.EXPIRY_NOTICE),
    ("Your certificate will expire on Jan 5, 2027.", RequestKind.EXPIRY_NOTICE),
    ("The certificate expires in 30 days.", RequestKind.EXPIRY_NOTICE),
    ("The certificate is expiring soon.", RequestKind.EXPIRY_NOTICE),
    ("Something ACM has not said before.", RequestKind.RENEWAL_COMPLETED),  # unknown: the serial decides
    ("", RequestKind.RENEWAL_COMPLETED),
    (None, RequestKind.RENEWAL_COMPLETED),
])
def test_health_notice_reads_the_english_description(text: str | None, kind: RequestKind) -> None:
    assert health_notice(text) is kind
    assert parse_event(health(text), region=REGION, account_id=ACCOUNT).kind is kind


def test_only_an_english_description_picks_the_kind() -> None:
    raw = health("Le certificat has expired (texte)", language="fr_FR")
    request = parse_event(raw, region=REGION, account_id=ACCOUNT)
    assert request.kind is RequestKind.RENEWAL_COMPLETED
    assert request.reason == "Le certificat has expired (texte)"  # still shown in a notification


def test_expiry_notice_keeps_its_first_sentence_as_reason_and_can_lead_to_an_install() -> None:
    request = parse_event(event("health-due-to-expire.json"), region=REGION, account_id=ACCOUNT)
    assert request.reason is not None and "is due to expire on Dec 28, 2026" in request.reason
    assert request.installs  # only when ACM holds a newer serial (below)


# --- days left: whole days, UTC, from NotAfter and now -----------------------------------


@pytest.mark.parametrize(("delta", "days", "phrase"), [
    (timedelta(days=25, hours=23), 25, "expires at 2026-12-28 23:59:59 UTC, 25 days left"),
    (timedelta(days=1, seconds=1), 1, "expires at 2026-12-28 23:59:59 UTC, 1 day left"),
    (timedelta(hours=23), 0, "expires at 2026-12-28 23:59:59 UTC, less than a day left"),
    (timedelta(seconds=-1), 0, "expired at 2026-12-28 23:59:59 UTC, less than a day ago"),
    (timedelta(days=-1, hours=-1), -1, "expired at 2026-12-28 23:59:59 UTC, 1 day ago"),
    (timedelta(days=-3, hours=-2), -3, "expired at 2026-12-28 23:59:59 UTC, 3 days ago"),
])
def test_days_left_and_the_phrase_count_whole_days_in_utc(delta: timedelta, days: int, phrase: str) -> None:
    now = NOT_AFTER - delta
    assert days_left(NOT_AFTER, now) == days
    assert expiry_phrase(NOT_AFTER, now) == phrase


def test_other_time_zones_and_naive_times_are_read_as_utc() -> None:
    cet = NOT_AFTER.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert format_not_after(cet) == "2026-12-28 23:59:59 UTC"
    assert days_left(NOT_AFTER.replace(tzinfo=None), NOT_AFTER - timedelta(days=2)) == 2


# --- ValidateEvent: DescribeCertificate and the inventory decide -----------------------------


def run(w: World, raw: Any, now: datetime | None = None, execution_arn: str = EXECUTION_ARN) -> Any:
    return validate_event(raw, execution_arn, region=REGION, account_id=ACCOUNT, settings=SETTINGS,
                          certificates=w.certificates, inventory=w.inventory, claims=w.claims,
                          executions=w.executions, records=w.records, now=now)


def deployed(w: World, target_id: str, serial: str | None) -> None:
    w.inventory.add(target(target_id))
    if serial is not None:
        w.inventory.items[(ARN, target_id)].update(lastDeployedSerial=serial, lastOutcome="VERIFIED")


@pytest.mark.parametrize("name", ["health-due-to-expire.json", "health-expired.json"])
def test_expiry_notice_without_a_newer_serial_is_notified_not_installed(name: str) -> None:
    w = world()
    deployed(w, "web-1", w.certificates.serial(ARN))
    deployed(w, "web-2", w.certificates.serial(ARN))
    not_after = pki().leaf_cert.not_valid_after_utc
    result = run(w, event(name), now=not_after - timedelta(days=9, hours=5))
    assert result.decision is Decision.EXPIRY_NOTICE
    assert (result.targetIds, result.serial) == (["web-1", "web-2"], w.certificates.serial(ARN))
    assert (result.notAfter, result.daysToExpiry) == (not_after, 9)
    assert result.reason is None
    assert w.claims.calls == []  # nothing claimed: a later renewal of this certificate is not blocked


def test_targets_without_a_recorded_serial_are_no_reason_to_install() -> None:
    w = world()
    deployed(w, "web-1", w.certificates.serial(ARN))
    deployed(w, "web-2", None)  # never rolled out by this deployment
    result = run(w, event("health-due-to-expire.json"))
    assert result.decision is Decision.EXPIRY_NOTICE
    assert result.reason == "1 of 2 targets record no deployed serial"


def test_expiry_notice_while_acm_holds_a_newer_serial_is_a_rollout() -> None:
    # The renewal happened (perhaps after Health sent the notice): a target records an older serial.
    w = world()
    deployed(w, "web-1", "01:02:03")
    deployed(w, "web-2", w.certificates.serial(ARN))
    result = run(w, event("health-due-to-expire.json"))
    assert (result.decision, result.targetIds) == (Decision.ROLLOUT, ["web-1", "web-2"])
    assert w.claims.operations() == ["claim"]
    # ... and once claimed, the renewal event for the same serial is a duplicate (one rollout per serial)
    again = run(w, event("health-renewal-completed.json"), execution_arn=EXECUTION_ARN.replace("rollout-1", "r-2"))
    assert (again.decision, again.duplicateOf) == (Decision.ALREADY_DEPLOYED, ROLLOUT_ID)


def test_an_expired_certificate_is_notified_not_rejected() -> None:
    w = World()
    w.certificates.add(ARN, pki(), status="EXPIRED")
    deployed(w, "web-1", "01:02:03")  # an older serial recorded, but ACM's certificate is not ISSUED
    result = run(w, event("health-expired.json"))
    assert (result.decision, result.reason) == (Decision.EXPIRY_NOTICE, "ACM status EXPIRED")
    with pytest.raises(CertificateNotIssued):  # a renewal event for it is still refused
        run(w, event("health-renewal-completed.json"))


def test_expiry_notice_for_a_certificate_without_targets_is_still_an_expiry_notice() -> None:
    result = run(world(), event("health-due-to-expire.json"))
    assert (result.decision, result.targetIds) == (Decision.EXPIRY_NOTICE, [])


def test_a_renewal_event_is_decided_as_before() -> None:
    w = world()
    deployed(w, "web-1", w.certificates.serial(ARN))
    assert run(w, event("health-renewal-completed.json")).decision is Decision.ALREADY_DEPLOYED


# --- Notify: the message ------------------------------------------------------------------


def expiry_state(**changes: Any) -> RolloutState:
    data: dict[str, Any] = {"decision": "EXPIRY_NOTICE", "rolloutId": ROLLOUT_ID, "certificateArn": ARN,
                            "serial": "0f:ac", "domainName": "web.internal.example",
                            "targetIds": ["web-1", "web-2"], "notAfter": NOT_AFTER.isoformat(), "daysToExpiry": 9}
    return RolloutState.model_validate({**data, **changes})


def test_expiry_message_says_when_how_long_which_targets_and_what_to_do() -> None:
    subject, body = format_message(RolloutOutcome.EXPIRY_NOTICE, expiry_state(), [],
                                   now=NOT_AFTER - timedelta(days=9, hours=5))
    assert subject == "[EXPIRY_NOTICE] web.internal.example: expires, not renewed"
    assert "The certificate expires at 2026-12-28 23:59:59 UTC, 9 days left." in body
    assert "2 still hold this certificate (inventory; none records a newer serial): web-1, web-2" in body
    assert "renewal has NOT" in body and "private CA" in body and "RenewalEligibility" in body
    assert "Nothing was exported or installed." in body


def test_expired_message_counts_the_days_since() -> None:
    subject, body = format_message(RolloutOutcome.EXPIRY_NOTICE, expiry_state(), [],
                                   now=NOT_AFTER + timedelta(days=3, hours=1))
    assert "EXPIRED" in subject
    assert "The certificate expired at 2026-12-28 23:59:59 UTC, 3 days ago." in body


def test_expiry_message_without_targets_or_not_after_says_so() -> None:
    subject, body = format_message(RolloutOutcome.EXPIRY_NOTICE,
                                   expiry_state(targetIds=[], notAfter=None, reason="ACM status EXPIRED"), [])
    assert "no target is registered" in body and "no expiry date" in body
    assert "Note:        ACM status EXPIRED" in body
    assert len(subject) <= 100


def test_expiry_message_names_at_most_fifty_targets() -> None:
    ids = [f"t-{i}" for i in range(EXPIRY_TARGETS_SHOWN + 7)]
    _, body = format_message(RolloutOutcome.EXPIRY_NOTICE, expiry_state(targetIds=ids), [], now=NOT_AFTER)
    assert f"t-{EXPIRY_TARGETS_SHOWN - 1} and 7 more" in body and f"t-{EXPIRY_TARGETS_SHOWN}," not in body


def test_notify_publishes_the_expiry_notice_and_deletes_no_staged_bundle() -> None:
    w = world()
    result = notify(expiry_state(), records=w.records, notifications=w.notifications, staging=w.staging,
                    secret_prefix="cert-rollout")
    assert result.outcome is RolloutOutcome.EXPIRY_NOTICE
    [message] = w.notifications.messages
    assert message["attributes"]["outcome"] == "EXPIRY_NOTICE"
    assert "2026-12-28 23:59:59 UTC" in message["message"]
    assert w.staging.calls == []  # no export ran: nothing was staged, nothing to delete
