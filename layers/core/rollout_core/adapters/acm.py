"""ACM adapter: DescribeCertificate, ExportCertificate, ListTagsForCertificate (port rollout_core/ports.py Certificates)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import named_aws_error
from rollout_core.domain.serials import canonical_serial, parse_serial
from rollout_core.ports import CertificateDescription, CertificateNotFound, ExportedCertificate

__all__ = ["AcmCertificates", "CertificateDescription", "CertificateNotFound", "ExportedCertificate"]


class AcmCertificates:
    """ACM through one boto3 client (``acm``: e.g. the CLI's; default the cached process-wide one)."""

    def __init__(self, acm: Any | None = None) -> None:
        self._acm = acm if acm is not None else cached_client("acm")

    def describe(self, certificate_arn: str) -> CertificateDescription:
        """DescribeCertificate -> CertificateDescription.

        The serial is converted from ACM's colon hex (or moto's decimal) to the canonical form.
        Raises CertificateNotFound, or a named AwsError (AwsThrottled ... AwsPermanentError).
        """
        cert: dict[str, Any] = self._read("DescribeCertificate", certificate_arn)["Certificate"]
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

    def tags(self, certificate_arn: str) -> dict[str, str]:
        """ListTagsForCertificate -> {key: value} ("" for a tag without a value; ACM returns at
        most 50 tags, in one answer). Raises CertificateNotFound or a named AwsError."""
        answer = self._read("ListTagsForCertificate", certificate_arn)
        return {str(t["Key"]): str(t.get("Value") or "") for t in answer.get("Tags", [])}

    def _read(self, operation: str, certificate_arn: str) -> dict[str, Any]:
        """One read of a certificate by ARN (``operation``: DescribeCertificate or
        ListTagsForCertificate) -> the answer. Raises CertificateNotFound for
        ResourceNotFoundException, else a named AwsError."""
        call = {"DescribeCertificate": self._acm.describe_certificate,
                "ListTagsForCertificate": self._acm.list_tags_for_certificate}[operation]
        try:
            answer: dict[str, Any] = call(CertificateArn=certificate_arn)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                raise CertificateNotFound(f"ACM has no certificate {certificate_arn}") from None
            raise named_aws_error(e, operation) from e
        except BotoCoreError as e:
            raise named_aws_error(e, operation) from e
        return answer

    def export(self, certificate_arn: str, passphrase: bytes) -> ExportedCertificate:
        """ExportCertificate with ``passphrase`` (the same bytes later used to decrypt).

        Raises a named AwsError; RequestInProgressException becomes AwsRequestInProgress (retried).
        The botocore error is not chained (``from None``): its request parameters hold the passphrase.
        """
        try:
            answer = self._acm.export_certificate(CertificateArn=certificate_arn, Passphrase=passphrase)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "ExportCertificate") from None
        return ExportedCertificate(
            certificate=answer["Certificate"],
            chain=answer.get("CertificateChain", ""),
            encrypted_private_key=answer["PrivateKey"],
        )
