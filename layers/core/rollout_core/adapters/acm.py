"""ACM: DescribeCertificate and ExportCertificate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client
from rollout_core.adapters.errors import named_aws_error
from rollout_core.domain.serials import canonical_serial, parse_serial


@dataclass(frozen=True)
class CertificateDescription:
    """What DescribeCertificate says about a certificate (the facts decisions are made on)."""

    arn: str
    type: str  # PRIVATE, IMPORTED, AMAZON_ISSUED
    status: str  # ISSUED, INACTIVE, EXPIRED, REVOKED, FAILED, PENDING_VALIDATION, ...
    serial: str | None  # canonical lowercase colon hex
    domain_name: str
    not_after: datetime | None
    renewal_status: str | None
    renewal_status_reason: str | None
    key_algorithm: str | None


@dataclass(frozen=True)
class ExportedCertificate:
    """ExportCertificate's answer. ``encrypted_private_key`` is secret: never log it."""

    certificate: str
    chain: str
    encrypted_private_key: str

    def __repr__(self) -> str:  # keep key material out of reprs and tracebacks
        return "ExportedCertificate(<redacted>)"


class CertificateNotFound(Exception):
    """ACM has no certificate with this ARN (ResourceNotFoundException)."""


def describe_certificate(arn: str, acm: Any | None = None) -> CertificateDescription:
    """DescribeCertificate -> CertificateDescription.

    The serial is converted from ACM's colon hex (or moto's decimal) to the canonical form.
    Raises CertificateNotFound, or a named AwsError (AwsThrottled ... AwsPermanentError).
    """
    acm = acm or client("acm")
    try:
        cert: dict[str, Any] = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise CertificateNotFound(f"ACM has no certificate {arn}") from None
        raise named_aws_error(e, "DescribeCertificate") from e
    except BotoCoreError as e:
        raise named_aws_error(e, "DescribeCertificate") from e
    serial = cert.get("Serial")
    renewal = cert.get("RenewalSummary") or {}
    return CertificateDescription(
        arn=cert["CertificateArn"],
        type=cert.get("Type", ""),
        status=cert.get("Status", ""),
        serial=canonical_serial(parse_serial(serial)) if serial else None,
        domain_name=cert.get("DomainName", ""),
        not_after=cert.get("NotAfter"),
        renewal_status=renewal.get("RenewalStatus"),
        renewal_status_reason=renewal.get("RenewalStatusReason"),
        key_algorithm=cert.get("KeyAlgorithm"),
    )


def export_certificate(arn: str, passphrase: bytes, acm: Any | None = None) -> ExportedCertificate:
    """ExportCertificate with ``passphrase`` (the same bytes later used to decrypt).

    Raises a named AwsError; RequestInProgressException becomes AwsRequestInProgress (retried).
    """
    acm = acm or client("acm")
    try:
        answer = acm.export_certificate(CertificateArn=arn, Passphrase=passphrase)
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "ExportCertificate") from None
    return ExportedCertificate(
        certificate=answer["Certificate"],
        chain=answer.get("CertificateChain", ""),
        encrypted_private_key=answer["PrivateKey"],
    )
