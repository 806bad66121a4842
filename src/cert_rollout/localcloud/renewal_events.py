"""What AWS emits after a private certificate's renewal, for the local cloud's RenewCertificate
(patches.py): the AWS Health event and ACM's "ACM Certificate Available" event, each put on the
default EventBridge bus, where the template's rules (HealthRenewalStateChange,
AcmRenewalCompleted) start the rollout as in AWS.

Shapes (ACM User Guide, "Amazon EventBridge support for ACM"):
* AWS Health: ``source`` aws.health, ``detail-type`` "AWS Health Event", ``detail.service``
  ACM, ``detail.eventTypeCode`` AWS_ACM_RENEWAL_STATE_CHANGE ("the certificate has been
  renewed, has expired, or is due to expire"), ``eventTypeCategory`` scheduledChange, the
  certificate ARN in ``resources`` and ``detail.affectedEntities``; the English description is
  ACM's renewal notice ("... has completed the renewal of an SSL/TLS certificate ...").
* ACM: ``source`` aws.acm, ``detail-type`` "ACM Certificate Available", ``detail.Action``
  RENEWAL, ``CertificateType`` PRIVATE, ``CommonName``, ``CertificateCreatedDate``,
  ``CertificateExpirationDate``, ``DaysToExpiry``, ``InUse``, ``Exported``.
The keys are those of the samples events/eventbridge/health-renewal-completed.json and
acm-certificate-available-renewal.json (tests/unit/test_renewal_events.py ties them).

Both announce one renewal: ValidateEvent claims (certificate ARN, serial) once, so the second
execution decides ALREADY_DEPLOYED (duplicateOf the first; logic/validate.py) and installs
nothing. Delivery is asynchronous and in that order (Health, then ACM), as best-effort events.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rollout_core.domain.arns import build_arn, partition_for_region

HEALTH_EVENT_CODE = "AWS_ACM_RENEWAL_STATE_CHANGE"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def health_renewal_event(*, certificate_arn: str, region: str, account_id: str, common_name: str, names: int,
                         not_after: datetime, now: datetime) -> dict[str, Any]:
    """The AWS Health AWS_ACM_RENEWAL_STATE_CHANGE event of a completed renewal of
    ``certificate_arn`` (``names``: how many domain names it holds; ``not_after``: the new
    certificate's expiry, ``now``: when the renewal completed; both timezone-aware)."""
    event_id = str(uuid.uuid4())
    health_arn = build_arn(partition_for_region(region), "health", region, "",
                           f"event/ACM/{HEALTH_EVENT_CODE}/{HEALTH_EVENT_CODE}-{event_id}")
    stamp = now.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    expires = not_after.astimezone(UTC).strftime("%b %d, %Y at %H:%M:%S UTC")
    description = (
        "This is to notify you that AWS Certificate Manager (ACM) has completed the renewal of an SSL/TLS "
        f"certificate that certificate includes the primary domain {common_name} and a total of {names} "
        f"domains.\n\nAWS account ID: {account_id}\nCertificate identifier: {certificate_arn}\n\n"
        f"Your new certificate expires on {expires}.\n"
        "If you have questions about this process, please contact AWS Support.")
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS Health Event", "source": "aws.health",
        "account": account_id, "time": _iso(now), "region": region, "resources": [certificate_arn],
        "detail": {
            "eventArn": health_arn, "service": "ACM", "eventTypeCode": HEALTH_EVENT_CODE,
            "eventTypeCategory": "scheduledChange", "startTime": stamp, "endTime": stamp,
            "eventDescription": [{"language": "en_US", "latestDescription": description}],
            "affectedEntities": [{"entityValue": certificate_arn}],
        },
    }


def acm_certificate_available_event(*, certificate_arn: str, region: str, account_id: str, common_name: str,
                                    first_san: str, created: datetime, not_after: datetime, now: datetime,
                                    exported: bool = True) -> dict[str, Any]:
    """ACM's "ACM Certificate Available" event (Action RENEWAL, CertificateType PRIVATE) of
    ``certificate_arn``, renewed at ``created`` and valid until ``not_after`` (timezone-aware)."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "ACM Certificate Available", "source": "aws.acm",
        "account": account_id, "time": _iso(now), "region": region, "resources": [certificate_arn],
        "detail": {
            "Action": "RENEWAL", "CertificateType": "PRIVATE", "CommonName": common_name,
            "FirstSubjectAlternativeName": first_san,
            "ValidityInDays": max(0, (not_after - created).days), "CertificateKeyPairOrigin": "AWS_MANAGED",
            "CertificateCreatedDate": _iso(created), "CertificateExpirationDate": _iso(not_after),
            "DaysToExpiry": max(0, (not_after - now).days), "InUse": False, "Exported": exported,
        },
    }


def renewal_events(bundle: Any, region: str, account_id: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """[Health event, ACM event] announcing the renewal of moto's ACM ``bundle`` (a CertBundle the
    local private CA has just reissued: its certificate, common name, SANs and ARN)."""
    now = now or datetime.now(UTC)
    cert = bundle._cert
    not_after = cert.not_valid_after_utc
    created = cert.not_valid_before_utc
    sans = list(bundle.sans) or [bundle.common_name]
    return [
        health_renewal_event(certificate_arn=bundle.arn, region=region, account_id=account_id,
                             common_name=bundle.common_name, names=len(sans), not_after=not_after, now=now),
        acm_certificate_available_event(certificate_arn=bundle.arn, region=region, account_id=account_id,
                                        common_name=bundle.common_name, first_san=sans[0], created=created,
                                        not_after=not_after, now=now),
    ]


def deliver_later(events: list[dict[str, Any]], deliver: Callable[[dict[str, Any]], Any],
                  delay: float = 0.5) -> threading.Thread:
    """Deliver ``events`` in order on a thread of their own, ``delay`` seconds before each
    (AWS sends them after the renewal completes, not inside the RenewCertificate call)."""

    def run() -> None:
        for event in events:
            time.sleep(delay)
            deliver(event)

    thread = threading.Thread(target=run, name="renewal-events", daemon=True)
    thread.start()
    return thread
