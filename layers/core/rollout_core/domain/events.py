"""Parse what EventBridge (or an operator) sends into one :class:`RolloutRequest`.

Accepted shapes (see DESIGN.md "Triggers" and cases/README.md "Events"):

* AWS Health (``source`` ``aws.health``, ``detail-type`` ``AWS Health Event``,
  ``detail.service`` ``ACM``): ``eventTypeCode`` ``AWS_ACM_RENEWAL_STATE_CHANGE`` ->
  RENEWAL_COMPLETED, ``AWS_ACM_RENEWAL_FAILURE`` -> RENEWAL_FAILED. The description is
  prose: it is carried in ``reason`` for the notification only and never decides
  anything (the caller compares serials via DescribeCertificate). Source: AWS Health
  User Guide, "Monitoring AWS Health events with Amazon EventBridge"; ACM User Guide,
  "Using Amazon EventBridge" / "AWS Health events".
* ACM (``source`` ``aws.acm``): ``ACM Certificate Available`` with ``detail.Action``
  ``RENEWAL`` and ``detail.CertificateType`` ``PRIVATE`` -> RENEWAL_COMPLETED;
  ``ACM Certificate Renewal Action Required`` -> RENEWAL_ACTION_REQUIRED (reason
  ``detail.RenewalStatusReason``, ``detail.DaysToExpiry``). Source: ACM User Guide,
  "Amazon EventBridge support for ACM" (event examples).
* Manual: ``{"certificateArn": ..., "force": true, "reason": ..., "requestedBy": ...}``
  (no ``source``) -> MANUAL_REDEPLOY.

The certificate ARN (``arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID``, ACM API
Reference / AWS General Reference "ARN format") must be of the deployment's partition,
region and account.

Hostile input (DESIGN.md, "Bad input gets a clear, named error"): whatever ``raw`` holds,
``parse_event`` raises one of the named errors below, never a bare Python exception. A raw
event over 256 KiB (the Step Functions input limit; Step Functions Developer Guide,
"Quotas related to state throttling and payload size") or nested more than 64 levels is
refused; NaN/Infinity are not JSON (RFC 8259 section 6) and are refused; free-text fields
are cut to 500 characters with control and bidirectional-override characters removed
(Unicode TR #9, section 2; "Trojan Source", CVE-2021-42574); error messages echo at most
200 characters of any input value.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import (
    ConfigurationError,
    ForeignCertificate,
    MalformedEvent,
    MissingCertificateArn,
    UnsupportedEvent,
)

__all__ = [
    "RequestKind",
    "RolloutRequest",
    "CertificateArn",
    "parse_certificate_arn",
    "parse_event",
    "partition_for_region",
]

HEALTH_SOURCE = "aws.health"
HEALTH_DETAIL_TYPE = "AWS Health Event"
ACM_SOURCE = "aws.acm"
ACM_AVAILABLE = "ACM Certificate Available"
ACM_ACTION_REQUIRED = "ACM Certificate Renewal Action Required"
MANUAL_SOURCE = "manual"

_HEALTH_CODES = {
    "AWS_ACM_RENEWAL_STATE_CHANGE": "RENEWAL_COMPLETED",
    "AWS_ACM_RENEWAL_FAILURE": "RENEWAL_FAILED",
}
_MANUAL_KEYS = frozenset({"certificateArn", "force", "reason", "requestedBy"})
_MAX_REASON = 500
#: Largest raw event accepted, in bytes of UTF-8 JSON: Step Functions' own input limit (256 KiB).
MAX_EVENT_BYTES = 256 * 1024
_MAX_DEPTH = 64
_MAX_SHOWN = 200
_MAX_EVENT_ID = 256
_MAX_DAYS = 36500
_MAX_INT_DIGITS = 64
# Unicode bidirectional formatting characters (UAX #9 section 2: LRM, RLM, ALM, LRE, RLE,
# PDF, LRO, RLO, LRI, RLI, FSI, PDI): they can make a notification read differently from
# what it holds.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Line and field breaks become one space (so words do not run together), other controls go.
_BREAKS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
_SPACES = re.compile(r"\s+")

_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):acm:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+):"
    r"(?P<account>\d{12}):certificate/(?P<id>[A-Za-z0-9][A-Za-z0-9-]{0,127})"
)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")
_ACCOUNT = re.compile(r"\d{12}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")


class RequestKind(StrEnum):
    """What the request asks for."""

    RENEWAL_COMPLETED = "RENEWAL_COMPLETED"
    RENEWAL_FAILED = "RENEWAL_FAILED"
    RENEWAL_ACTION_REQUIRED = "RENEWAL_ACTION_REQUIRED"
    MANUAL_REDEPLOY = "MANUAL_REDEPLOY"


class CertificateArn(BaseModel):
    """The parts of an ACM certificate ARN."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arn: str
    partition: str
    region: str
    account_id: str
    certificate_id: str


class RolloutRequest(BaseModel):
    """One normalized request; JSON-serializable (``model_dump(mode="json")``), no secrets.

    ``reason`` is for the notification only (``PCA_ACCESS_DENIED``, the Health
    description's first sentence, the operator's text); ``days_to_expiry`` comes from
    ACM events only; ``force`` (manual only) asks to redeploy even when this serial was
    already rolled out; ``requested_by_text`` is the operator's free text, not an identity.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: RequestKind
    certificate_arn: str
    event_id: str | None = None
    source: str
    detail_type: str | None = None
    reason: str | None = None
    days_to_expiry: int | None = None
    force: bool = False
    requested_by_text: str | None = None

    @property
    def certificate_id(self) -> str:
        """The ARN's last segment (``certificate/<ID>`` -> ``<ID>``)."""
        return self.certificate_arn.rsplit("/", 1)[-1]

    @property
    def installs(self) -> bool:
        """True when this request can lead to an install (completed renewal or manual)."""
        return self.kind in (RequestKind.RENEWAL_COMPLETED, RequestKind.MANUAL_REDEPLOY)


def partition_for_region(region: str) -> str:
    """AWS partition of a region name: ``cn-*`` -> ``aws-cn``, ``us-gov-*`` -> ``aws-us-gov``, else ``aws``.

    Source: AWS General Reference, "Amazon Resource Names (ARNs)" (partition).
    """
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def parse_certificate_arn(value: Any, *, field: str = "certificate ARN") -> CertificateArn:
    """Parse and check the shape of an ACM certificate ARN (no region/account check).

    ``"arn:aws:acm:eu-west-1:123456789012:certificate/1f2e..."`` -> :class:`CertificateArn`.
    Raises :class:`MalformedEvent` naming ``field`` when the value is not a string, not an
    ACM certificate ARN, or its partition does not fit its region.
    Source: ACM API Reference (CertificateArn), AWS General Reference (ARN format).
    """
    if not isinstance(value, str):
        raise MalformedEvent(f"{field} must be a string, got {type(value).__name__}")
    match = _ARN.fullmatch(value.strip())
    if not match:
        raise MalformedEvent(
            f"{field} {value[:200]!r} is not an ACM certificate ARN "
            "(arn:aws[-cn|-us-gov]:acm:REGION:ACCOUNT:certificate/ID)"
        )
    if partition_for_region(match["region"]) != match["partition"]:
        raise MalformedEvent(f"{field} {value!r}: partition {match['partition']!r} does not fit region")
    return CertificateArn(
        arn=match.group(0),
        partition=match["partition"],
        region=match["region"],
        account_id=match["account"],
        certificate_id=match["id"],
    )


def _check_deployment(region: str, account_id: str) -> None:
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ConfigurationError(f"deployment region {region!r} is not an AWS region name")
    if not isinstance(account_id, str) or not _ACCOUNT.fullmatch(account_id):
        raise ConfigurationError(f"deployment account id {account_id!r} is not 12 digits")


def _ours(arn: CertificateArn, field: str, region: str, account_id: str) -> str:
    if arn.region != region or arn.account_id != account_id:
        raise ForeignCertificate(
            f"{field} {arn.arn!r} belongs to region {arn.region} account {arn.account_id}, "
            f"not to this deployment (region {region} account {account_id})"
        )
    return arn.arn


def _load(raw: dict[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEvent("event body is not UTF-8 text") from None
    if not isinstance(raw, str):
        raise MalformedEvent(f"event must be a JSON object, got {type(raw).__name__}")
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(
            f"event body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(loaded, dict):
        raise MalformedEvent(f"event body must be a JSON object, got {type(loaded).__name__}")
    return loaded


def _optional_str(container: dict[str, Any], key: str, field: str) -> str | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{field} must be a string, got {type(value).__name__}")
    return value


def _detail(event: dict[str, Any]) -> dict[str, Any]:
    if "detail" not in event or event["detail"] is None:
        raise MalformedEvent("event has no 'detail' field")
    detail = event["detail"]
    if not isinstance(detail, dict):
        raise MalformedEvent(f"event field 'detail' must be an object, got {type(detail).__name__}")
    return detail


def _event_arns(event: dict[str, Any], detail: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """(field name, value) of every certificate ARN candidate: resources[], affectedEntities[]."""
    found: list[tuple[str, Any]] = []
    resources = event.get("resources", [])
    if resources is None:
        resources = []
    if not isinstance(resources, list):
        raise MalformedEvent(f"event field 'resources' must be a list, got {type(resources).__name__}")
    for index, value in enumerate(resources):
        found.append((f"resources[{index}]", value))
    if detail is not None:
        entities = detail.get("affectedEntities", [])
        if entities is None:
            entities = []
        if not isinstance(entities, list):
            raise MalformedEvent("event field 'detail.affectedEntities' must be a list")
        for index, entity in enumerate(entities):
            if not isinstance(entity, dict):
                raise MalformedEvent(f"event field 'detail.affectedEntities[{index}]' must be an object")
            value = entity.get("entityValue")
            # Health may list non-ARN entities (e.g. a domain name); only ARNs are candidates.
            if isinstance(value, str) and value.startswith("arn:"):
                found.append((f"detail.affectedEntities[{index}].entityValue", value))
    return found


def _single_certificate_arn(
    event: dict[str, Any], detail: dict[str, Any] | None, region: str, account_id: str
) -> str:
    candidates = _event_arns(event, detail)
    if not candidates:
        raise MissingCertificateArn(
            "event names no certificate: 'resources' is empty and 'detail.affectedEntities' has no ARN"
        )
    parsed = [(field, parse_certificate_arn(value, field=field)) for field, value in candidates]
    distinct = sorted({arn.arn for _, arn in parsed})
    if len(distinct) > 1:
        raise MalformedEvent(
            f"event names {len(distinct)} different certificate ARNs in "
            f"{', '.join(field for field, _ in parsed)}; one event must name one certificate"
        )
    field, arn = parsed[0]
    return _ours(arn, field, region, account_id)


def _first_sentence(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    return sentence if len(sentence) <= _MAX_REASON else sentence[: _MAX_REASON - 3] + "..."


def _health_description(detail: dict[str, Any]) -> str | None:
    descriptions = detail.get("eventDescription")
    if not isinstance(descriptions, list):
        return None
    texts = [d for d in descriptions if isinstance(d, dict) and isinstance(d.get("latestDescription"), str)]
    if not texts:
        return None
    english = [d for d in texts if d.get("language") == "en_US"]
    return _first_sentence((english or texts)[0]["latestDescription"])


def _int_field(detail: dict[str, Any], key: str) -> int | None:
    value = detail.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise MalformedEvent(f"event field 'detail.{key}' must be an integer, got {value!r}")
    return int(value)


def _parse_health(event: dict[str, Any], region: str, account_id: str) -> RolloutRequest:
    detail_type = event.get("detail-type")
    if detail_type != HEALTH_DETAIL_TYPE:
        raise UnsupportedEvent(f"aws.health event with detail-type {detail_type!r} is not handled")
    detail = _detail(event)
    service = detail.get("service")
    if service is None:
        raise MalformedEvent("event field 'detail.service' is missing")
    if service != "ACM":
        raise UnsupportedEvent(f"AWS Health event for service {service!r} is not handled (only ACM)")
    code = detail.get("eventTypeCode")
    if code is None:
        raise MalformedEvent("event field 'detail.eventTypeCode' is missing")
    if code not in _HEALTH_CODES:
        raise UnsupportedEvent(f"AWS Health eventTypeCode {code!r} is not handled")
    return RolloutRequest(
        kind=RequestKind(_HEALTH_CODES[code]),
        certificate_arn=_single_certificate_arn(event, detail, region, account_id),
        event_id=_optional_str(event, "id", "event field 'id'"),
        source=HEALTH_SOURCE,
        detail_type=detail_type,
        reason=_health_description(detail),
    )


def _required(detail: dict[str, Any], key: str) -> Any:
    if detail.get(key) is None:
        raise MalformedEvent(f"event field 'detail.{key}' is missing")
    return detail[key]


def _parse_acm(event: dict[str, Any], region: str, account_id: str) -> RolloutRequest:
    detail_type = event.get("detail-type")
    if detail_type == ACM_AVAILABLE:
        detail = _detail(event)
        action = _required(detail, "Action")
        if action != "RENEWAL":
            raise UnsupportedEvent(f"ACM Certificate Available with detail.Action {action!r} (only RENEWAL)")
        cert_type = _required(detail, "CertificateType")
        if cert_type != "PRIVATE":
            raise UnsupportedEvent(
                f"ACM Certificate Available with detail.CertificateType {cert_type!r} (only PRIVATE)"
            )
        kind, reason, days = RequestKind.RENEWAL_COMPLETED, None, _int_field(detail, "DaysToExpiry")
    elif detail_type == ACM_ACTION_REQUIRED:
        detail = _detail(event)
        kind = RequestKind.RENEWAL_ACTION_REQUIRED
        reason = _optional_str(detail, "RenewalStatusReason", "event field 'detail.RenewalStatusReason'")
        days = _int_field(detail, "DaysToExpiry")
    else:
        raise UnsupportedEvent(f"aws.acm event with detail-type {detail_type!r} is not handled")
    return RolloutRequest(
        kind=kind,
        certificate_arn=_single_certificate_arn(event, None, region, account_id),
        event_id=_optional_str(event, "id", "event field 'id'"),
        source=ACM_SOURCE,
        detail_type=detail_type,
        reason=reason,
        days_to_expiry=days,
    )


def _parse_manual(event: dict[str, Any], region: str, account_id: str) -> RolloutRequest:
    unknown = sorted(set(event) - _MANUAL_KEYS)
    if unknown:
        raise MalformedEvent(
            f"manual request has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_MANUAL_KEYS))}"
        )
    arn = parse_certificate_arn(event["certificateArn"], field="certificateArn")
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise MalformedEvent(f"manual request field 'force' must be true or false, got {force!r}")
    reason = _optional_str(event, "reason", "manual request field 'reason'")
    return RolloutRequest(
        kind=RequestKind.MANUAL_REDEPLOY,
        certificate_arn=_ours(arn, "certificateArn", region, account_id),
        source=MANUAL_SOURCE,
        reason=reason[:_MAX_REASON] if reason else reason,
        force=force,
        requested_by_text=_optional_str(event, "requestedBy", "manual request field 'requestedBy'"),
    )


def parse_event(raw: dict[str, Any] | str | bytes, *, region: str, account_id: str) -> RolloutRequest:
    """Turn an EventBridge event or a manual request into a :class:`RolloutRequest`.

    ``raw``: the event as a dict, or its JSON text/bytes. ``region``/``account_id``: the
    deployment's (e.g. ``AWS_REGION`` and the caller's account); a certificate of another
    region or account is refused.

    Certificate ARN: ``resources[]`` plus ARN-valued ``detail.affectedEntities[].entityValue``
    (Health); all must name the same certificate.

    Raises (each message names the field):
    :class:`MalformedEvent` (not JSON, not an object, missing ``detail``/required field,
    wrong type, several different certificate ARNs, an invalid ARN);
    :class:`MissingCertificateArn` (no ARN anywhere; a MalformedEvent);
    :class:`UnsupportedEvent` (other source, detail-type, Health service/code, ACM Action
    or CertificateType); :class:`ForeignCertificate` (other region/account);
    :class:`ConfigurationError` (bad ``region``/``account_id`` arguments).
    Sources: see module docstring.
    """
    _check_deployment(region, account_id)
    event = _load(raw)
    source = event.get("source")
    if source is None:
        if "certificateArn" in event:
            return _parse_manual(event, region, account_id)
        raise MalformedEvent("event has no 'source' (nor 'certificateArn' for a manual request)")
    if source == HEALTH_SOURCE:
        return _parse_health(event, region, account_id)
    if source == ACM_SOURCE:
        return _parse_acm(event, region, account_id)
    raise UnsupportedEvent(
        f"event source {source!r} is not handled (aws.health, aws.acm or a manual request)"
    )
