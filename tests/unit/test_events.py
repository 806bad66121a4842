"""Events: what EventBridge or an operator sends -> RolloutRequest (cases/README.md, "Events")."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from rollout_core.domain.errors import (
    ConfigurationError,
    ForeignCertificate,
    MalformedEvent,
    MissingCertificateArn,
    UnsupportedEvent,
)
from rollout_core.domain.events import RequestKind, RolloutRequest, parse_certificate_arn, parse_event

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
CERT_ID = "6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"
ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/{CERT_ID}"
OTHER_ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/00000000-1111-4222-8333-444444444444"


def load_text(name: str, arn: str = ARN, region: str = REGION, account: str = ACCOUNT) -> str:
    text = (EVENTS / name).read_text()
    return (
        text.replace("${CertificateArn}", arn).replace("${Region}", region).replace("${AccountId}", account)
    )


def load(name: str, **kwargs: str) -> dict[str, Any]:
    return json.loads(load_text(name, **kwargs))


def parse(raw: Any) -> RolloutRequest:
    return parse_event(raw, region=REGION, account_id=ACCOUNT)


# --- the sample events -----------------------------------------------------------------


def test_sample_events_have_no_placeholder_left_after_substitution() -> None:
    for path in EVENTS.glob("*.json"):
        assert "${" not in load_text(path.name)


def test_health_renewal_completed_is_a_completed_renewal() -> None:
    request = parse(load("health-renewal-completed.json"))
    assert request.kind is RequestKind.RENEWAL_COMPLETED
    assert request.certificate_arn == ARN
    assert request.certificate_id == CERT_ID
    assert request.event_id == "7f3b2c1a-5d4e-4f60-9a8b-0c1d2e3f4a5b"
    assert request.source == "aws.health"
    assert request.detail_type == "AWS Health Event"
    assert request.force is False
    assert request.installs
    assert request.reason and request.reason.startswith("This is to notify you")


def test_acm_certificate_available_renewal_is_a_completed_renewal() -> None:
    request = parse(load("acm-certificate-available-renewal.json"))
    assert request.kind is RequestKind.RENEWAL_COMPLETED
    assert request.certificate_arn == ARN
    assert request.source == "aws.acm"
    assert request.detail_type == "ACM Certificate Available"
    assert request.days_to_expiry == 395


def test_health_and_acm_events_for_one_renewal_name_the_same_certificate() -> None:
    health = parse(load("health-renewal-completed.json"))
    acm = parse(load("acm-certificate-available-renewal.json"))
    assert (health.kind, health.certificate_arn) == (acm.kind, acm.certificate_arn)


def test_health_renewal_failure_is_renewal_failed_with_reason() -> None:
    request = parse(load("health-renewal-failure.json"))
    assert request.kind is RequestKind.RENEWAL_FAILED
    assert request.certificate_arn == ARN
    assert request.reason == "AWS Certificate Manager (ACM) was unable to renew the private certificate."
    assert not request.installs


def test_renewal_action_required_carries_reason_and_days_to_expiry() -> None:
    request = parse(load("acm-renewal-action-required.json"))
    assert request.kind is RequestKind.RENEWAL_ACTION_REQUIRED
    assert request.reason == "PCA_ACCESS_DENIED"
    assert request.days_to_expiry == 44
    assert request.certificate_arn == ARN
    assert not request.installs


def test_manual_redeploy_is_forced() -> None:
    request = parse(load("manual-redeploy.json"))
    assert request.kind is RequestKind.MANUAL_REDEPLOY
    assert request.force is True
    assert request.reason == "target web-2 was rebuilt"
    assert request.source == "manual"
    assert request.event_id is None
    assert request.installs


def test_event_as_json_text_and_bytes_parses_the_same() -> None:
    text = load_text("health-renewal-completed.json")
    assert parse(text) == parse(text.encode()) == parse(json.loads(text))


def test_request_round_trips_through_json_state() -> None:
    request = parse(load("acm-renewal-action-required.json"))
    dumped = request.model_dump(mode="json")
    assert dumped["kind"] == "RENEWAL_ACTION_REQUIRED"
    assert RolloutRequest.model_validate(dumped) == request


# --- accepted variants ---------------------------------------------------------------------


def test_health_event_with_empty_resources_uses_affected_entities() -> None:
    event = load("health-renewal-completed.json")
    event["resources"] = []
    assert parse(event).certificate_arn == ARN


def test_health_event_without_resources_field_uses_affected_entities() -> None:
    event = load("health-renewal-completed.json")
    del event["resources"]
    assert parse(event).certificate_arn == ARN


def test_health_event_with_unusual_text_still_acts_on_the_certificate() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["eventDescription"] = [
        {"language": "en_US", "latestDescription": "Something odd happened"}
    ]
    request = parse(event)
    assert request.kind is RequestKind.RENEWAL_COMPLETED  # the caller checks the serial, not the text
    assert request.reason == "Something odd happened"


def test_health_event_without_description_has_no_reason() -> None:
    event = load("health-renewal-completed.json")
    del event["detail"]["eventDescription"]
    assert parse(event).reason is None


def test_health_event_ignores_non_arn_affected_entities() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["affectedEntities"].append({"entityValue": "web.internal.example"})
    assert parse(event).certificate_arn == ARN


def test_manual_request_without_force_is_not_forced() -> None:
    request = parse({"certificateArn": ARN, "requestedBy": "alice via runbook"})
    assert request.force is False
    assert request.requested_by_text == "alice via runbook"


@pytest.mark.parametrize(
    ("region", "account", "partition"),
    [("cn-north-1", "111122223333", "aws-cn"), ("us-gov-west-1", "444455556666", "aws-us-gov")],
)
def test_other_partitions_are_accepted_in_their_regions(region: str, account: str, partition: str) -> None:
    arn = f"arn:{partition}:acm:{region}:{account}:certificate/{CERT_ID}"
    event = load("health-renewal-completed.json", arn=arn, region=region, account=account)
    assert parse_event(event, region=region, account_id=account).certificate_arn == arn


# --- rejected shapes ---------------------------------------------------------------------


def test_certificate_of_another_region_is_foreign() -> None:
    arn = f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/{CERT_ID}"
    with pytest.raises(ForeignCertificate, match="us-east-1"):
        parse(load("health-renewal-completed.json", arn=arn))


def test_certificate_of_another_account_is_foreign() -> None:
    arn = f"arn:aws:acm:{REGION}:999999999999:certificate/{CERT_ID}"
    with pytest.raises(ForeignCertificate, match="999999999999"):
        parse(load("acm-certificate-available-renewal.json", arn=arn))


def test_manual_request_for_a_foreign_certificate_is_refused() -> None:
    arn = f"arn:aws:acm:{REGION}:999999999999:certificate/{CERT_ID}"
    with pytest.raises(ForeignCertificate, match="certificateArn"):
        parse(load("manual-redeploy.json", arn=arn))


def test_event_without_detail_is_malformed() -> None:
    for name in ("health-renewal-completed.json", "acm-certificate-available-renewal.json"):
        event = load(name)
        del event["detail"]
        with pytest.raises(MalformedEvent, match="'detail'"):
            parse(event)


def test_detail_that_is_not_an_object_is_malformed() -> None:
    event = load("health-renewal-completed.json")
    event["detail"] = "ACM"
    with pytest.raises(MalformedEvent, match="'detail' must be an object"):
        parse(event)


@pytest.mark.parametrize("body", ["not json", b'{"source": ', "", b"\xff\xfe"])
def test_non_json_body_is_malformed(body: str | bytes) -> None:
    with pytest.raises(MalformedEvent, match="not JSON|not UTF-8"):
        parse(body)


@pytest.mark.parametrize("body", ["[1, 2]", "42", "null"])
def test_json_that_is_not_an_object_is_malformed(body: str) -> None:
    with pytest.raises(MalformedEvent, match="JSON object"):
        parse(body)


@pytest.mark.parametrize("source", ["aws.ec2", "custom.app", "aws.acm-pca"])
def test_other_source_is_unsupported(source: str) -> None:
    event = load("health-renewal-completed.json")
    event["source"] = source
    with pytest.raises(UnsupportedEvent, match=source.replace(".", r"\.")):
        parse(event)


def test_event_without_source_or_certificate_arn_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="'source'"):
        parse({"detail": {}})


def test_several_different_certificate_arns_are_malformed() -> None:
    event = load("health-renewal-completed.json")
    event["resources"].append(OTHER_ARN)
    with pytest.raises(MalformedEvent, match=r"2 different certificate ARNs.*resources\[1\]"):
        parse(event)


def test_resources_and_affected_entities_disagreeing_are_malformed() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["affectedEntities"] = [{"entityValue": OTHER_ARN}]
    with pytest.raises(MalformedEvent, match=r"affectedEntities\[0\]\.entityValue"):
        parse(event)


def test_repeated_same_arn_is_one_certificate() -> None:
    event = load("health-renewal-completed.json")
    event["resources"] = [ARN, ARN]
    assert parse(event).certificate_arn == ARN


def test_event_without_any_certificate_arn_is_missing_certificate_arn() -> None:
    event = load("health-renewal-completed.json")
    event["resources"] = []
    event["detail"]["affectedEntities"] = []
    with pytest.raises(MissingCertificateArn, match="resources"):
        parse(event)
    acm = load("acm-certificate-available-renewal.json")
    acm["resources"] = []
    with pytest.raises(MissingCertificateArn):
        parse(acm)


@pytest.mark.parametrize(
    "bad_arn",
    [
        "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/abc",
        "arn:aws:acm:eu-west-1:123456789012:certificate/",
        "arn:aws:acm:eu-west-1:12345:certificate/abc",
        "arn:aws:iam::123456789012:role/x",
        "arn:aws-cn:acm:eu-west-1:123456789012:certificate/abc",
        "arn:aws:acm:eu-west-1:123456789012:certificate/abc/def",
    ],
)
def test_invalid_certificate_arn_is_malformed_naming_the_field(bad_arn: str) -> None:
    event = load("acm-certificate-available-renewal.json")
    event["resources"] = [bad_arn]
    with pytest.raises(MalformedEvent, match=r"resources\[0\]"):
        parse(event)


def test_non_string_resource_is_malformed() -> None:
    event = load("acm-certificate-available-renewal.json")
    event["resources"] = [{"arn": ARN}]
    with pytest.raises(MalformedEvent, match=r"resources\[0\] must be a string"):
        parse(event)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Action", "ISSUANCE"),
        ("Action", "IMPORT"),
        ("CertificateType", "AMAZON_ISSUED"),
        ("CertificateType", "IMPORTED"),
    ],
)
def test_certificate_available_other_than_private_renewal_is_unsupported(field: str, value: str) -> None:
    event = load("acm-certificate-available-renewal.json")
    event["detail"][field] = value
    with pytest.raises(UnsupportedEvent, match=f"detail.{field} '{value}'"):
        parse(event)


@pytest.mark.parametrize("field", ["Action", "CertificateType"])
def test_certificate_available_missing_action_or_type_is_malformed(field: str) -> None:
    event = load("acm-certificate-available-renewal.json")
    del event["detail"][field]
    with pytest.raises(MalformedEvent, match=f"detail.{field}"):
        parse(event)


def test_other_acm_detail_type_is_unsupported() -> None:
    event = load("acm-certificate-available-renewal.json")
    event["detail-type"] = "ACM Certificate Expired"
    with pytest.raises(UnsupportedEvent, match="ACM Certificate Expired"):
        parse(event)


def test_health_event_of_another_service_or_code_is_unsupported() -> None:
    event = load("health-renewal-completed.json")
    other = copy.deepcopy(event)
    other["detail"]["service"] = "EC2"
    with pytest.raises(UnsupportedEvent, match="EC2"):
        parse(other)
    other = copy.deepcopy(event)
    other["detail"]["eventTypeCode"] = "AWS_ACM_SOMETHING_ELSE"
    with pytest.raises(UnsupportedEvent, match="AWS_ACM_SOMETHING_ELSE"):
        parse(other)
    other = copy.deepcopy(event)
    other["detail-type"] = "AWS Health Abuse Event"
    with pytest.raises(UnsupportedEvent, match="detail-type"):
        parse(other)


def test_health_event_without_event_type_code_is_malformed() -> None:
    event = load("health-renewal-completed.json")
    del event["detail"]["eventTypeCode"]
    with pytest.raises(MalformedEvent, match="detail.eventTypeCode"):
        parse(event)


def test_days_to_expiry_of_the_wrong_type_is_malformed() -> None:
    event = load("acm-renewal-action-required.json")
    event["detail"]["DaysToExpiry"] = "soon"
    with pytest.raises(MalformedEvent, match="detail.DaysToExpiry"):
        parse(event)


def test_manual_request_with_string_force_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="'force'"):
        parse({"certificateArn": ARN, "force": "yes"})


def test_manual_request_with_unknown_field_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="'Force'"):
        parse({"certificateArn": ARN, "Force": True})


def test_manual_request_with_invalid_arn_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="certificateArn"):
        parse({"certificateArn": "web.internal.example", "force": True})


def test_bad_deployment_settings_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_event(load("manual-redeploy.json"), region="", account_id=ACCOUNT)
    with pytest.raises(ConfigurationError):
        parse_event(load("manual-redeploy.json"), region=REGION, account_id="12")


def test_certificate_arn_parts() -> None:
    parts = parse_certificate_arn(ARN)
    assert (parts.partition, parts.region, parts.account_id, parts.certificate_id) == (
        "aws",
        REGION,
        ACCOUNT,
        CERT_ID,
    )
