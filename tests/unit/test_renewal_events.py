"""The local cloud's RenewCertificate emits what AWS emits after a private renewal
(localcloud/renewal_events.py): the AWS Health event and ACM's "ACM Certificate Available" event,
shaped as the samples events/eventbridge/health-renewal-completed.json and
acm-certificate-available-renewal.json, parsed as completed renewals, each routed by exactly the
template rule that routes its sample."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from moto.events.models import EventPattern
from rollout_core.domain.events import RequestKind, parse_event
from samtranslator.yaml_helper import yaml_parse

from cert_rollout.localcloud import renewal_events
from cert_rollout.localcloud.pki import generate_key

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "eu-west-1", "123456789012"
ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"
SAMPLES = {"AWS Health Event": "health-renewal-completed.json",
           "ACM Certificate Available": "acm-certificate-available-renewal.json"}


def bundle(not_after_days: int = 395) -> Any:
    """A stand-in of moto's CertBundle as the local private CA leaves it after a renewal."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = generate_key("EC_prime256v1")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.internal.example")])
    start = datetime.now(UTC).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=not_after_days)).sign(key, hashes.SHA256()))
    return SimpleNamespace(arn=ARN, _cert=cert, common_name="web.internal.example",
                           sans=["web.internal.example", "api.internal.example"])


def sample(name: str) -> dict[str, Any]:
    text = (ROOT / "events" / "eventbridge" / name).read_text()
    for placeholder, value in (("${CertificateArn}", ARN), ("${Region}", REGION), ("${AccountId}", ACCOUNT)):
        text = text.replace(placeholder, value)
    return dict(json.loads(text))


def rule_patterns() -> dict[str, Any]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    machine = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine")
    return {name: event["Properties"]["Pattern"] for name, event in machine["Properties"]["Events"].items()
            if event["Type"] == "EventBridgeRule"}


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return renewal_events.renewal_events(bundle(), REGION, ACCOUNT)


def test_health_first_then_acm(events: list[dict[str, Any]]) -> None:
    assert [(e["source"], e["detail-type"]) for e in events] == [
        ("aws.health", "AWS Health Event"), ("aws.acm", "ACM Certificate Available")]


@pytest.mark.parametrize("index", [0, 1], ids=["health", "acm"])
def test_event_has_the_samples_shape(events: list[dict[str, Any]], index: int) -> None:
    event = events[index]
    expected = sample(SAMPLES[event["detail-type"]])
    assert event.keys() == expected.keys()
    assert event["detail"].keys() == expected["detail"].keys()
    for key in ("version", "source", "detail-type", "account", "region", "resources"):
        assert event[key] == expected[key], key
    if event["source"] == "aws.health":
        for key in ("service", "eventTypeCode", "eventTypeCategory", "affectedEntities"):
            assert event["detail"][key] == expected["detail"][key], key
        assert [d.keys() for d in event["detail"]["eventDescription"]] == \
            [d.keys() for d in expected["detail"]["eventDescription"]]
        assert event["detail"]["eventArn"].startswith(f"arn:aws:health:{REGION}::event/ACM/AWS_ACM_RENEWAL_STATE_CHANGE/")
    else:
        for key in ("Action", "CertificateType", "CommonName", "FirstSubjectAlternativeName"):
            assert event["detail"][key] == expected["detail"][key], key
        assert event["detail"]["ValidityInDays"] == 395
        assert 393 <= event["detail"]["DaysToExpiry"] <= 395
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("index", [0, 1], ids=["health", "acm"])
def test_event_is_a_completed_renewal_of_the_certificate(events: list[dict[str, Any]], index: int) -> None:
    request = parse_event(events[index], region=REGION, account_id=ACCOUNT)
    assert request.kind is RequestKind.RENEWAL_COMPLETED
    assert request.certificate_arn == ARN


@pytest.mark.parametrize("index", [0, 1], ids=["health", "acm"])
def test_event_is_routed_by_the_rule_that_routes_its_sample(events: list[dict[str, Any]], index: int) -> None:
    def matched(event: dict[str, Any]) -> list[str]:
        return [name for name, pattern in rule_patterns().items()
                if EventPattern.load(json.dumps(pattern)).matches_event(event)]

    event = events[index]
    assert matched(event) == matched(sample(SAMPLES[event["detail-type"]]))
    assert len(matched(event)) == 1


def test_health_description_names_the_new_expiry_and_domain_count(events: list[dict[str, Any]]) -> None:
    text = events[0]["detail"]["eventDescription"][0]["latestDescription"]
    not_after = bundle()._cert.not_valid_after_utc
    assert f"expires on {not_after:%b %d, %Y}" in text
    assert "primary domain web.internal.example and a total of 2 domains" in text
    assert ARN in text


def test_events_are_delivered_in_order_after_the_call() -> None:
    got: list[str] = []
    done = threading.Event()

    def deliver(event: dict[str, Any]) -> None:
        got.append(event["source"])
        if len(got) == 2:
            done.set()

    thread = renewal_events.deliver_later(renewal_events.renewal_events(bundle(), REGION, ACCOUNT), deliver,
                                          delay=0.2)
    assert got == []  # asynchronous: nothing delivered inside RenewCertificate
    assert done.wait(5)
    thread.join(5)
    assert got == ["aws.health", "aws.acm"]
