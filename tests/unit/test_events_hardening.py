"""parse_event on hostile input: always a named MalformedEvent, never a bare Python error.

DESIGN.md "Hard rules" / "Bad input gets a clear, named error": whatever an event holds
(wrong types, NaN, huge numbers, deep nesting, megabytes of text, bidi overrides), the
parser answers with a RolloutError subclass naming the field, and bounds what it echoes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rollout_core.domain.errors import MalformedEvent, RolloutError, UnsupportedEvent
from rollout_core.domain.events import MAX_EVENT_BYTES, RequestKind, RolloutRequest, parse_event

from tests.unit.test_events import ARN, load, load_text


def parse(raw: Any) -> RolloutRequest:
    return parse_event(raw, region="eu-west-1", account_id="123456789012")


def refused(raw: Any, match: str) -> MalformedEvent:
    """parse(raw) must raise MalformedEvent (nothing else) whose message matches ``match``."""
    try:
        parse(raw)
    except MalformedEvent as exc:
        assert __import__("re").search(match, str(exc)), str(exc)
        return exc
    except BaseException as exc:  # noqa: BLE001 - the point: no other exception type
        pytest.fail(f"{type(exc).__name__} instead of MalformedEvent: {str(exc)[:300]}")
    pytest.fail("accepted")


def action_required_text(days: str) -> str:
    text = load_text("acm-renewal-action-required.json")
    assert '"DaysToExpiry": 44' in text
    return text.replace('"DaysToExpiry": 44', f'"DaysToExpiry": {days}')


# --- wrong types where a string is compared or looked up ----------------------------------


@pytest.mark.parametrize("code", [["AWS_ACM_RENEWAL_STATE_CHANGE"], {"a": 1}, 7, True])
def test_event_type_code_that_is_not_a_string_names_the_field(code: Any) -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["eventTypeCode"] = code
    refused(event, r"detail\.eventTypeCode.*string")


@pytest.mark.parametrize(
    ("name", "where", "field"),
    [
        ("health-renewal-completed.json", (), "source"),
        ("health-renewal-completed.json", (), "detail-type"),
        ("health-renewal-completed.json", ("detail",), "service"),
        ("acm-certificate-available-renewal.json", ("detail",), "Action"),
        ("acm-certificate-available-renewal.json", ("detail",), "CertificateType"),
    ],
)
def test_selector_fields_of_the_wrong_type_are_malformed_not_unsupported(name: str, where: tuple, field: str) -> None:
    event = load(name)
    container = event["detail"] if where else event
    container[field] = [{"nested": ["x"] * 3}]
    refused(event, field.replace(".", r"\.") + ".*string")


def test_non_string_object_key_is_malformed() -> None:
    event = load("manual-redeploy.json")
    event[("a", "b")] = 1  # a dict built in Python, not from JSON
    event[3] = 1
    refused(event, "not readable JSON.*key")


def test_value_json_cannot_hold_is_malformed() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["extra"] = {1, 2}
    refused(event, r"not readable JSON: event field 'detail\.extra' holds a set")


# --- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "days", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5000, "-" + "9" * 5000, "1" * 65]
)
def test_days_to_expiry_that_is_no_json_number_names_the_field(days: str) -> None:
    refused(action_required_text(days), r"detail\.DaysToExpiry")


@pytest.mark.parametrize(
    "days", [float("nan"), float("inf"), float("-inf"), 10**5000, -(10**400)],
    ids=["nan", "inf", "-inf", "5001-digit", "-401-digit"],
)
def test_days_to_expiry_non_finite_or_huge_in_a_dict_names_the_field(days: Any) -> None:
    event = load("acm-renewal-action-required.json")
    event["detail"]["DaysToExpiry"] = days
    exc = refused(event, r"detail\.DaysToExpiry")
    assert len(str(exc)) < 400


@pytest.mark.parametrize("days", [36501, -36501, 44.5, True, "44", [44], {"d": 44}])
def test_days_to_expiry_outside_100_years_or_not_an_integer_is_refused(days: Any) -> None:
    event = load("acm-renewal-action-required.json")
    event["detail"]["DaysToExpiry"] = days
    refused(event, r"detail\.DaysToExpiry' must be an integer in -36500\.\.36500")


@pytest.mark.parametrize(("days", "expected"), [(0, 0), (-1, -1), (36500, 36500), (-36500, -36500), (44.0, 44)])
def test_days_to_expiry_within_bounds_is_accepted(days: Any, expected: int) -> None:
    event = load("acm-renewal-action-required.json")
    event["detail"]["DaysToExpiry"] = days
    assert parse(event).days_to_expiry == expected


def test_huge_number_in_an_ignored_field_still_names_the_field() -> None:
    text = load_text("health-renewal-completed.json").replace('"detail": {', '"detail": {"n": ' + "7" * 5000 + ", ", 1)
    refused(text, r"detail\.n' is a number of 5000 digits, more than 64")


# --- nesting and size ----------------------------------------------------------------------


def test_deeply_nested_json_text_is_not_readable_json() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    refused(action_required_text(deep), "event is not readable JSON")


def test_moderately_deep_nesting_names_the_field() -> None:
    deep = "[" * 200 + "]" * 200
    refused(action_required_text(deep), r"not readable JSON: event field 'detail\.DaysToExpiry\[0\].*nested more than 64")


def test_deeply_nested_dict_is_not_readable_json() -> None:
    value: Any = "x"
    for _ in range(100_000):
        value = {"a": [value]}
    event = load("health-renewal-completed.json")
    event["detail"]["eventTypeCode"] = value
    exc = refused(event, "event is not readable JSON")
    assert len(str(exc)) < 400


def test_self_referencing_dict_is_refused_not_looped_over() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["loop"] = event
    refused(event, "not readable JSON|256 KiB")


@pytest.mark.parametrize("as_bytes", [False, True])
def test_event_text_over_256_kib_is_refused(as_bytes: bool) -> None:
    event = load("manual-redeploy.json")
    event["reason"] = "r" * MAX_EVENT_BYTES
    text = json.dumps(event)
    refused(text.encode() if as_bytes else text, r"event is .*bytes.*262144-byte \(256 KiB\) limit")


def test_event_dict_over_256_kib_is_refused() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["padding"] = ["x" * 1000] * 300
    refused(event, r"256 KiB")


def test_event_of_multibyte_text_counts_utf8_bytes() -> None:
    event = load("manual-redeploy.json")
    event["reason"] = "\u00e9" * (MAX_EVENT_BYTES // 2 + 10)  # fewer characters than the limit, more bytes
    refused(json.dumps(event, ensure_ascii=False), "256 KiB")


def test_event_just_under_the_limit_is_accepted() -> None:
    event = load("manual-redeploy.json")
    event["reason"] = "r" * (MAX_EVENT_BYTES - 1000)
    assert len(parse(json.dumps(event)).reason or "") == 500


# --- free text ----------------------------------------------------------------------------


def test_free_text_is_cut_to_500_characters() -> None:
    event = load("manual-redeploy.json")
    event["reason"] = "r" * 5000
    event["requestedBy"] = "p" * 5000
    request = parse(event)
    assert len(request.reason or "") == 500 and len(request.requested_by_text or "") == 500
    action = load("acm-renewal-action-required.json")
    action["detail"]["RenewalStatusReason"] = "PCA_ACCESS_DENIED " * 500
    assert len(parse(action).reason or "") <= 500


@pytest.mark.parametrize("field", ["reason", "requestedBy"])
def test_control_and_bidi_characters_are_dropped_from_manual_free_text(field: str) -> None:
    event = load("manual-redeploy.json")
    event[field] = "rebuilt\u202e by\x00 ops\u2066\u200f\x1b[31m\ton\nMonday\u2028"
    request = parse(event)
    text = request.reason if field == "reason" else request.requested_by_text
    assert text == "rebuilt by ops[31m on Monday"


def test_control_and_bidi_characters_are_dropped_from_acm_reason() -> None:
    event = load("acm-renewal-action-required.json")
    event["detail"]["RenewalStatusReason"] = "PCA_\u202eDENIED_SSECCA\x00"
    assert parse(event).reason == "PCA_DENIED_SSECCA"


def test_control_and_bidi_characters_are_dropped_from_health_description() -> None:
    event = load("health-renewal-failure.json")
    event["detail"]["eventDescription"] = [{"language": "en_US", "latestDescription": "Renewal \u202efailed\x07. More."}]
    assert parse(event).reason == "Renewal failed."


def test_free_text_of_only_controls_is_no_reason() -> None:
    event = load("manual-redeploy.json")
    event["reason"] = "\x00\u202e\n"
    assert parse(event).reason is None


@pytest.mark.parametrize("event_id", ["x" * 257, "id\x00", "id\u202e"])
def test_odd_event_id_is_refused_not_altered(event_id: str) -> None:
    event = load("health-renewal-completed.json")
    event["id"] = event_id
    refused(event, r"'id' must be at most 256 printable characters")


# --- what messages echo ---------------------------------------------------------------


def test_invalid_arn_message_echoes_at_most_about_200_characters() -> None:
    event = load("acm-certificate-available-renewal.json")
    secret_tail = "TAIL-NEVER-ECHOED"
    event["resources"] = ["arn:aws:acm:" + "a" * 10_000 + secret_tail]
    exc = refused(event, r"resources\[0\].*not an ACM certificate ARN")
    assert secret_tail not in str(exc)
    assert len(str(exc)) < 200 + 200  # ~200 characters of input plus the rule


def test_partition_mismatch_message_is_bounded() -> None:
    event = load("acm-certificate-available-renewal.json")
    arn = "arn:aws-cn:acm:eu-west-1:123456789012:certificate/" + "a" * 128
    event["resources"] = [arn]
    exc = refused(event, r"resources\[0\].*partition 'aws-cn' does not fit region 'eu-west-1'")
    assert len(str(exc)) < 400


def test_unsupported_values_are_echoed_bounded() -> None:
    event = load("health-renewal-completed.json")
    event["detail"]["eventTypeCode"] = "X" * 100_000
    with pytest.raises(UnsupportedEvent) as info:
        parse(event)
    assert len(str(info.value)) < 400 and "100000 characters" in str(info.value)


def test_manual_request_unknown_fields_message_is_bounded() -> None:
    event: dict[str, Any] = {"certificateArn": ARN}
    event.update({f"k{i:04d}" + "x" * 300: True for i in range(50)})
    exc = refused(event, r"unknown field\(s\).*and 40 more")
    assert len(str(exc)) < 4000


def test_many_different_arns_message_is_bounded() -> None:
    event = load("acm-certificate-available-renewal.json")
    event["resources"] = [f"arn:aws:acm:eu-west-1:123456789012:certificate/{i:08d}" for i in range(1000)]
    exc = refused(event, "1000 different certificate ARNs.*and 995 more")
    assert len(str(exc)) < 400


# --- a property: nothing but named errors ------------------------------------------------------


HOSTILE: list[Any] = [
    None,
    [],
    {"a": float("nan")},
    {"deep": [[[[[[[[]]]]]]]]},
    ["not", "a", "dict"],
    float("inf"),
    "\ufeff{}",
    b"\x00",
    '{"source": "aws.acm", "detail-type": "ACM Certificate Available", "detail": null}',
    '{"source": "aws.health", "detail-type": "AWS Health Event", "detail": {"service": "ACM", '
    '"eventTypeCode": "AWS_ACM_RENEWAL_FAILURE", "affectedEntities": [1]}}',
    '{"source": "aws.health", "detail-type": "AWS Health Event", "detail": {"service": "ACM", '
    '"eventTypeCode": "AWS_ACM_RENEWAL_FAILURE", "eventDescription": [{"latestDescription": 5}]}, '
    '"resources": [{"arn": 1}]}',
    '{"certificateArn": ["arn"]}',
    '{"certificateArn": null}',
    '{"source": "aws.acm", "detail-type": "ACM Certificate Renewal Action Required", "detail": '
    '{"RenewalStatusReason": {"a": 1}}, "resources": ["' + ARN + '"]}',
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_inputs_end_in_a_named_error(raw: Any) -> None:
    try:
        parse(raw)
    except RolloutError:
        pass
    except BaseException as exc:  # noqa: BLE001
        pytest.fail(f"{type(exc).__name__}: {str(exc)[:300]}")


def test_a_well_formed_event_still_parses_after_hardening() -> None:
    assert parse(load_text("health-renewal-completed.json")).kind is RequestKind.RENEWAL_COMPLETED


def test_arn_with_non_ascii_digits_is_not_an_arn() -> None:
    event = load("acm-certificate-available-renewal.json")
    event["resources"] = [ARN.replace("123456789012", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662")]
    refused(event, r"resources\[0\].*not an ACM certificate ARN")
