"""Parse what EventBridge (or an operator) sends into one :class:`RolloutRequest`.

Accepted shapes (see DESIGN.md "Triggers" and cases/README.md "Events"):

* AWS Health (``source`` ``aws.health``, ``detail-type`` ``AWS Health Event``,
  ``detail.service`` ``ACM``): ``eventTypeCode`` ``AWS_ACM_RENEWAL_FAILURE`` -> RENEWAL_FAILED;
  ``AWS_ACM_RENEWAL_STATE_CHANGE`` is used for three notices, "the certificate has been
  renewed, has expired, or is due to expire" (ACM User Guide, "Amazon EventBridge support
  for ACM", AWS health events), and only the English description tells them apart: an
  expiry notice ("has expired", "due to expire", ...: :func:`health_notice`) -> EXPIRY_NOTICE,
  anything else (ACM's "has completed the renewal", or wording not recognised) ->
  RENEWAL_COMPLETED. The wording only picks the kind; it never installs or withholds
  anything by itself: for both kinds the caller compares ACM's serial (DescribeCertificate)
  with the deployed ones (logic/validate.py). The description's first sentence is carried in
  ``reason`` for the notification. Sources: AWS Health User Guide, "Monitoring AWS Health
  events with Amazon EventBridge"; ACM User Guide, "Amazon EventBridge support for ACM";
  the renewal prefix "AWS Certificate Manager (ACM) has completed the renewal" as AWS
  Support gave it (awsdocs/aws-certificate-user-guide issue 20). AWS publishes no sample of
  the expiry wording: the phrases matched are those of the documented states.
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
    "health_notice",
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

HEALTH_STATE_CHANGE = "AWS_ACM_RENEWAL_STATE_CHANGE"
_HEALTH_CODES = {
    HEALTH_STATE_CHANGE: "RENEWAL_COMPLETED",  # or EXPIRY_NOTICE by its description: health_notice
    "AWS_ACM_RENEWAL_FAILURE": "RENEWAL_FAILED",
}
# AWS_ACM_RENEWAL_STATE_CHANGE descriptions (whitespace collapsed, case ignored). A renewal is
# checked first: its text also says when the *new* certificate "expires on".
_HEALTH_RENEWED = re.compile(r"\b(?:completed the renewal|has been renewed|was renewed|renewal (?:is|was) complete)",
                             re.IGNORECASE)
_HEALTH_EXPIRY = re.compile(
    r"\b(?:has expired|have expired|is expired|due to expire|will expire|is expiring|about to expire|"
    r"expiring soon|expires (?:in|within) [0-9]+ days?)\b", re.IGNORECASE)
_MANUAL_KEYS = frozenset({"certificateArn", "force", "reason", "requestedBy"})
_MAX_REASON = 500
#: Largest raw event accepted, in bytes of UTF-8 JSON: Step Functions' own input limit (256 KiB).
MAX_EVENT_BYTES = 256 * 1024
_MAX_DEPTH = 64
_MAX_SHOWN = 200
_MAX_EVENT_ID = 256
_MAX_DAYS = 36500
_MAX_INT_DIGITS = 64
_MAX_INT = 10**_MAX_INT_DIGITS
# Unicode bidirectional formatting characters (UAX #9 section 2: LRM, RLM, ALM, LRE, RLE,
# PDF, LRO, RLO, LRI, RLI, FSI, PDI): they can make a notification read differently from
# what it holds.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Line and field breaks become one space (so words do not run together), other controls go.
_BREAKS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
_SPACES = re.compile(r"\s+")

# Used with fullmatch only; [0-9], not \d (which also matches non-ASCII digits such as "١").
_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):acm:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]+):"
    r"(?P<account>[0-9]{12}):certificate/(?P<id>[A-Za-z0-9][A-Za-z0-9-]{0,127})"
)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
_ACCOUNT = re.compile(r"[0-9]{12}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s|\n")


class RequestKind(StrEnum):
    """What the request asks for."""

    RENEWAL_COMPLETED = "RENEWAL_COMPLETED"
    RENEWAL_FAILED = "RENEWAL_FAILED"
    RENEWAL_ACTION_REQUIRED = "RENEWAL_ACTION_REQUIRED"
    # AWS Health "has expired" / "is due to expire" (AWS_ACM_RENEWAL_STATE_CHANGE): not a renewal.
    EXPIRY_NOTICE = "EXPIRY_NOTICE"
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
        """True when this request can lead to an install: a completed renewal, a manual
        redeploy, or an expiry notice (only when ACM already holds a serial a target does not
        have yet: logic/validate.py)."""
        return self.kind in (RequestKind.RENEWAL_COMPLETED, RequestKind.MANUAL_REDEPLOY, RequestKind.EXPIRY_NOTICE)


def partition_for_region(region: str) -> str:
    """AWS partition of a region name: ``cn-*`` -> ``aws-cn``, ``us-gov-*`` -> ``aws-us-gov``, else ``aws``.

    Source: AWS General Reference, "Amazon Resource Names (ARNs)" (partition).
    """
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _show(value: Any) -> str:
    """A short, safe description of an input value for an error message.

    Strings: ``repr`` of at most 200 characters (repr escapes control and bidi characters),
    then the full length; small numbers, booleans and null as themselves; anything else by
    type only (never ``repr`` of a container: it may be huge or nested too deep to print).
    """
    if isinstance(value, str):
        shown = repr(value[:_MAX_SHOWN])
        return shown if len(value) <= _MAX_SHOWN else f"{shown}... ({len(value)} characters)"
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**15 else "an integer of more than 15 digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _clean_text(text: str) -> str | None:
    """Free text for a notification: breaks -> one space, controls/bidi/surrogates dropped,
    whitespace collapsed, at most 500 characters (cut ones end with ``...``); None if empty."""
    kept = []
    for ch in text:
        if ch in _BREAKS:
            kept.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs"):
            continue
        else:
            kept.append(ch)
    cleaned = _SPACES.sub(" ", "".join(kept)).strip()
    if not cleaned:
        return None
    return cleaned if len(cleaned) <= _MAX_REASON else cleaned[: _MAX_REASON - 3] + "..."


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
            f"{field} {_show(value)} is not an ACM certificate ARN "
            "(arn:aws[-cn|-us-gov]:acm:REGION:ACCOUNT:certificate/ID)"
        )
    if partition_for_region(match["region"]) != match["partition"]:
        raise MalformedEvent(
            f"{field} {_show(match.group(0))}: partition {match['partition']!r} does not fit "
            f"region {match['region']!r}"
        )
    return CertificateArn(
        arn=match.group(0),
        partition=match["partition"],
        region=match["region"],
        account_id=match["account"],
        certificate_id=match["id"],
    )


def _check_deployment(region: str, account_id: str) -> None:
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ConfigurationError(f"deployment region {_show(region)} is not an AWS region name")
    if not isinstance(account_id, str) or not _ACCOUNT.fullmatch(account_id):
        raise ConfigurationError(f"deployment account id {_show(account_id)} is not 12 digits")


def _ours(arn: CertificateArn, field: str, region: str, account_id: str) -> str:
    if arn.region != region or arn.account_id != account_id:
        raise ForeignCertificate(
            f"{field} {arn.arn!r} belongs to region {arn.region} account {arn.account_id}, "
            f"not to this deployment (region {region} account {account_id})"
        )
    return arn.arn


def _json_constant(name: str) -> float:
    # NaN / Infinity / -Infinity are not JSON (RFC 8259 section 6); read them as floats so
    # _check_shape refuses them naming the field they are in.
    return float(name)


class _LongNumber:
    """A JSON integer of more than 64 digits, kept unconverted: Python refuses int() of more
    than 4300 digits (ValueError) and no event field needs more than a few. _check_shape
    refuses it naming its field, so it never reaches a field check."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _json_int(text: str) -> int | _LongNumber:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _MAX_INT_DIGITS else _LongNumber(digits)


def _too_large(size: int, *, estimated: bool = False) -> MalformedEvent:
    amount = f"over {MAX_EVENT_BYTES} bytes as JSON" if estimated else f"{size} bytes"
    return MalformedEvent(
        f"event is {amount}, more than the {MAX_EVENT_BYTES}-byte (256 KiB) limit of a Step Functions input"
    )


_Path = tuple[Any, ...] | None  # (parent path, key or index), built only when an error names it


def _path_text(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        path, step = path
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            name = step if len(step) <= 40 else step[:40] + "..."
            parts.append(("." if path is not None else "") + name.encode("unicode_escape").decode("ascii"))
    text = "".join(reversed(parts))
    return f"event field '{text if len(text) <= 120 else text[:120] + '...'}'"


def _text_size(text: str) -> int:
    if len(text) > MAX_EVENT_BYTES:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass")) + 2


_Pending = list[tuple[Any, _Path, int]]  # (value, path, depth) still to check


def _within_limit(size: int) -> int:
    """``size`` (estimated bytes of UTF-8 JSON so far); raises MalformedEvent once it passes
    MAX_EVENT_BYTES (the Step Functions input limit)."""
    if size > MAX_EVENT_BYTES:
        raise _too_large(size, estimated=True)
    return size


def _push_members(value: dict[Any, Any], path: _Path, depth: int, pending: _Pending) -> int:
    """Queue the members of the JSON object ``value`` (at ``path``, ``depth``) on ``pending``
    and return the estimated bytes of its keys. Raises MalformedEvent for a non-string key."""
    size = 0
    for key, item in value.items():
        if not isinstance(key, str):
            where = "the event" if path is None else _path_text(path)
            raise MalformedEvent(
                f"event is not readable JSON: {where} has a key that is {_show(key)}, not a string"
            )
        size += _text_size(key)
        pending.append((item, (path, key), depth + 1))
    return size


def _scalar_size(value: Any, path: _Path) -> int:
    """Estimated bytes of the JSON scalar ``value`` at ``path``: a string, null, a boolean, an
    integer under 64 digits or a finite float. Raises MalformedEvent (naming the field) for a
    longer number, NaN/Infinity (RFC 8259 section 6) or a value JSON cannot hold."""
    if isinstance(value, str):
        return _text_size(value)
    if value is None or isinstance(value, bool):
        return 5
    if isinstance(value, int):
        if abs(value) >= _MAX_INT:
            raise MalformedEvent(f"{_path_text(path)} is a number of more than {_MAX_INT_DIGITS} digits")
        return 66
    if isinstance(value, _LongNumber):
        raise MalformedEvent(
            f"{_path_text(path)} is a number of {value.digits} digits, more than {_MAX_INT_DIGITS}"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedEvent(
                f"{_path_text(path)} is {_show(value)}: NaN, Infinity and numbers too large for a "
                "double are not JSON numbers (RFC 8259 section 6)"
            )
        return 24
    raise MalformedEvent(f"event is not readable JSON: {_path_text(path)} holds {_show(value)}")


def _check_shape(event: dict[str, Any]) -> None:
    """Refuse what is no JSON object of sane size, naming the field: over 256 KiB (estimated
    as UTF-8 JSON), nested over 64 levels, a non-string key, NaN/Infinity or a number of more
    than 64 digits, a value JSON cannot hold. Iterative and bounded (no recursion, no repr)."""
    size = 0
    pending: _Pending = [(event, None, 1)]
    while pending:
        value, path, depth = pending.pop()
        if depth > _MAX_DEPTH:
            raise MalformedEvent(
                f"event is not readable JSON: {_path_text(path)} is nested more than {_MAX_DEPTH} levels deep"
            )
        if isinstance(value, dict):
            size = _within_limit(size + 2 + 4 * len(value))
            size += _push_members(value, path, depth, pending)
        elif isinstance(value, list):
            size = _within_limit(size + 2 + len(value))
            pending.extend((item, (path, index), depth + 1) for index, item in enumerate(value))
        else:
            size += _scalar_size(value, path)
        _within_limit(size)


def _load(raw: dict[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(raw, dict):
        _check_shape(raw)
        return raw
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_EVENT_BYTES:
            raise _too_large(len(raw))
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEvent("event body is not UTF-8 text") from None
    if not isinstance(raw, str):
        raise MalformedEvent(f"event must be a JSON object, got {type(raw).__name__}")
    size = len(raw) if len(raw) > MAX_EVENT_BYTES else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise _too_large(size, estimated=len(raw) > MAX_EVENT_BYTES)
    try:
        loaded = json.loads(raw, parse_constant=_json_constant, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(
            f"event is not readable JSON: body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise MalformedEvent(f"event is not readable JSON: nested more than {_MAX_DEPTH} levels deep") from None
    except ValueError:  # defensive: the hooks above leave json nothing else to refuse
        raise MalformedEvent("event is not readable JSON: a value cannot be read") from None
    if not isinstance(loaded, dict):
        raise MalformedEvent(f"event body must be a JSON object, got {type(loaded).__name__}")
    _check_shape(loaded)
    return loaded


def _optional_str(container: dict[str, Any], key: str, field: str) -> str | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{field} must be a string, got {type(value).__name__}")
    return value


def _free_text(container: dict[str, Any], key: str, field: str) -> str | None:
    """An optional free-text string, cleaned for a notification (see :func:`_clean_text`)."""
    value = _optional_str(container, key, field)
    return None if value is None else _clean_text(value)


def _event_id(event: dict[str, Any]) -> str | None:
    """EventBridge's event id: an identifier, so refused (never altered) when odd."""
    value = _optional_str(event, "id", "event field 'id'")
    if value is not None and (
        len(value) > _MAX_EVENT_ID or any(ch in _BIDI or not ch.isprintable() for ch in value)
    ):
        raise MalformedEvent(
            f"event field 'id' must be at most {_MAX_EVENT_ID} printable characters "
            f"(no control or bidi characters), got {_show(value)}"
        )
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
        fields = [field for field, _ in parsed]
        listed = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
        raise MalformedEvent(
            f"event names {len(distinct)} different certificate ARNs in {listed}; "
            "one event must name one certificate"
        )
    field, arn = parsed[0]
    return _ours(arn, field, region, account_id)


def _first_sentence(text: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    return _clean_text(_SENTENCE_END.split(text, maxsplit=1)[0])


def _health_texts(detail: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the description to show, the English one if any) of ``detail.eventDescription[]``."""
    descriptions = detail.get("eventDescription")
    if not isinstance(descriptions, list):
        return None, None
    texts = [d["latestDescription"] for d in descriptions
             if isinstance(d, dict) and isinstance(d.get("latestDescription"), str)]
    english = [d["latestDescription"] for d in descriptions
               if isinstance(d, dict) and isinstance(d.get("latestDescription"), str) and d.get("language") == "en_US"]
    shown = (english or texts or [None])[0]
    return shown, (english[0] if english else None)


def health_notice(description: str | None) -> RequestKind:
    """What an ``AWS_ACM_RENEWAL_STATE_CHANGE`` event announces, from its English description.

    "... has completed the renewal ..." (or "has been renewed") -> RENEWAL_COMPLETED, even when
    it also says when the new certificate expires; "has expired", "is due to expire", "will
    expire", "is expiring", "about to expire", "expires in N days" -> EXPIRY_NOTICE; no English
    description or other wording -> RENEWAL_COMPLETED (as before this rule: the serial
    comparison then decides, cases/README.md "act on the serial, not the text").
    Source: module docstring.
    """
    if description is None:
        return RequestKind.RENEWAL_COMPLETED
    text = _SPACES.sub(" ", description[:MAX_EVENT_BYTES])
    if _HEALTH_RENEWED.search(text):
        return RequestKind.RENEWAL_COMPLETED
    if _HEALTH_EXPIRY.search(text):
        return RequestKind.EXPIRY_NOTICE
    return RequestKind.RENEWAL_COMPLETED


def _days_to_expiry(detail: dict[str, Any]) -> int | None:
    """``detail.DaysToExpiry``: an integer (44 or 44.0) in -36500..36500 (100 years), or absent."""
    value = detail.get("DaysToExpiry")
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    if number is None or not -_MAX_DAYS <= number <= _MAX_DAYS:
        raise MalformedEvent(
            f"event field 'detail.DaysToExpiry' must be an integer in -{_MAX_DAYS}..{_MAX_DAYS}, "
            f"got {_show(value)}"
        )
    return number


def _parse_health(event: dict[str, Any], region: str, account_id: str) -> RolloutRequest:
    detail_type = _optional_str(event, "detail-type", "event field 'detail-type'")
    if detail_type != HEALTH_DETAIL_TYPE:
        raise UnsupportedEvent(f"aws.health event with detail-type {_show(detail_type)} is not handled")
    detail = _detail(event)
    service = _optional_str(detail, "service", "event field 'detail.service'")
    if service is None:
        raise MalformedEvent("event field 'detail.service' is missing")
    if service != "ACM":
        raise UnsupportedEvent(f"AWS Health event for service {_show(service)} is not handled (only ACM)")
    code = detail.get("eventTypeCode")
    if code is None:
        raise MalformedEvent("event field 'detail.eventTypeCode' is missing")
    if not isinstance(code, str):
        raise MalformedEvent(f"event field 'detail.eventTypeCode' must be a string, got {_show(code)}")
    if code not in _HEALTH_CODES:
        raise UnsupportedEvent(f"AWS Health eventTypeCode {_show(code)} is not handled")
    shown, english = _health_texts(detail)
    kind = health_notice(english) if code == HEALTH_STATE_CHANGE else RequestKind(_HEALTH_CODES[code])
    return RolloutRequest(
        kind=kind,
        certificate_arn=_single_certificate_arn(event, detail, region, account_id),
        event_id=_event_id(event),
        source=HEALTH_SOURCE,
        detail_type=detail_type,
        reason=_first_sentence(shown) if shown is not None else None,
    )


def _required(detail: dict[str, Any], key: str) -> str:
    value = _optional_str(detail, key, f"event field 'detail.{key}'")
    if value is None:
        raise MalformedEvent(f"event field 'detail.{key}' is missing")
    return value


def _parse_acm(event: dict[str, Any], region: str, account_id: str) -> RolloutRequest:
    detail_type = _optional_str(event, "detail-type", "event field 'detail-type'")
    if detail_type == ACM_AVAILABLE:
        detail = _detail(event)
        action = _required(detail, "Action")
        if action != "RENEWAL":
            raise UnsupportedEvent(
                f"ACM Certificate Available with detail.Action {_show(action)} (only RENEWAL)"
            )
        cert_type = _required(detail, "CertificateType")
        if cert_type != "PRIVATE":
            raise UnsupportedEvent(
                f"ACM Certificate Available with detail.CertificateType {_show(cert_type)} (only PRIVATE)"
            )
        kind, reason, days = RequestKind.RENEWAL_COMPLETED, None, _days_to_expiry(detail)
    elif detail_type == ACM_ACTION_REQUIRED:
        detail = _detail(event)
        kind = RequestKind.RENEWAL_ACTION_REQUIRED
        reason = _free_text(detail, "RenewalStatusReason", "event field 'detail.RenewalStatusReason'")
        days = _days_to_expiry(detail)
    else:
        raise UnsupportedEvent(f"aws.acm event with detail-type {_show(detail_type)} is not handled")
    return RolloutRequest(
        kind=kind,
        certificate_arn=_single_certificate_arn(event, None, region, account_id),
        event_id=_event_id(event),
        source=ACM_SOURCE,
        detail_type=detail_type,
        reason=reason,
        days_to_expiry=days,
    )


def _parse_manual(event: dict[str, Any], region: str, account_id: str) -> RolloutRequest:
    unknown = sorted(_show(key) for key in set(event) - _MANUAL_KEYS)
    if unknown:
        raise MalformedEvent(
            f"manual request has unknown field(s) {', '.join(unknown[:10])}"
            f"{f' and {len(unknown) - 10} more' if len(unknown) > 10 else ''}; "
            f"allowed: {', '.join(sorted(_MANUAL_KEYS))}"
        )
    arn = parse_certificate_arn(event["certificateArn"], field="certificateArn")
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise MalformedEvent(f"manual request field 'force' must be true or false, got {_show(force)}")
    reason = _free_text(event, "reason", "manual request field 'reason'")
    return RolloutRequest(
        kind=RequestKind.MANUAL_REDEPLOY,
        certificate_arn=_ours(arn, "certificateArn", region, account_id),
        source=MANUAL_SOURCE,
        reason=reason,
        force=force,
        requested_by_text=_free_text(event, "requestedBy", "manual request field 'requestedBy'"),
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
    wrong type, several different certificate ARNs, an invalid ARN; "event is not readable
    JSON" for nesting over 64 levels or values JSON cannot hold; NaN/Infinity or a number of
    over 64 digits anywhere; ``detail.DaysToExpiry`` not an integer in -36500..36500; an
    event over 256 KiB; an odd ``id``). Never another exception type, whatever ``raw`` holds.
    Free text (``reason``, ``requestedBy``, ``RenewalStatusReason``, the Health description)
    is cut to 500 characters, controls and bidi overrides removed;
    :class:`MissingCertificateArn` (no ARN anywhere; a MalformedEvent);
    :class:`UnsupportedEvent` (other source, detail-type, Health service/code, ACM Action
    or CertificateType); :class:`ForeignCertificate` (other region/account);
    :class:`ConfigurationError` (bad ``region``/``account_id`` arguments).
    Sources: see module docstring.
    """
    _check_deployment(region, account_id)
    event = _load(raw)
    source = _optional_str(event, "source", "event field 'source'")
    if source is None:
        if "certificateArn" in event:
            return _parse_manual(event, region, account_id)
        raise MalformedEvent("event has no 'source' (nor 'certificateArn' for a manual request)")
    if source == HEALTH_SOURCE:
        return _parse_health(event, region, account_id)
    if source == ACM_SOURCE:
        return _parse_acm(event, region, account_id)
    raise UnsupportedEvent(
        f"event source {_show(source)} is not handled (aws.health, aws.acm or a manual request)"
    )
