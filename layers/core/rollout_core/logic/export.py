"""ExportCertificate: export with a fresh passphrase, check the key and the chain, stage the
bundle in Secrets Manager under the customer-managed KMS key.

Rules: K1 (one canonical passphrase byte string for export and decrypt, ACM's alphabet),
K2 (decrypt right after export and match the key to the certificate by public key, else
ExportMismatch and nothing is installed anywhere), K5 (leaf first, each signed by the next).
Only references leave this function: the secret's ARN and version id, the serial.
"""

from __future__ import annotations

import json

from cryptography import x509

from rollout_core import ports
from rollout_core.contracts import ExportResult
from rollout_core.domain.keys import (
    assert_key_matches_certificate,
    decrypt_private_key,
    generate_passphrase,
    private_key_to_pem,
    validate_passphrase,
)
from rollout_core.domain.pem import build_bundle, certificate_facts
from rollout_core.domain.serials import canonical_serial, parse_serial
from rollout_core.observability import logger
from rollout_core.settings import ExportSettings


def secret_name(prefix: str, certificate_arn: str) -> str:
    """``<prefix>/<certificate id>``: one secret per certificate, one version per export."""
    return f"{prefix}/{certificate_arn.rsplit('/', 1)[-1]}"


def export_certificate(certificate_arn: str, expected_serial: str | None, rollout_id: str, *,
                       settings: ExportSettings, certificates: ports.Certificates,
                       staging: ports.BundleStaging) -> ExportResult:
    """Export ``certificate_arn`` and stage it; returns references only.

    ``expected_serial`` is what ValidateEvent saw; when ACM has renewed again since, the
    exported (newer) serial is the one rolled out, and a warning says so.
    Raises InvalidPassphrase, KeyDecryptionFailed, ExportMismatch, InvalidBundle (domain errors),
    or a named AwsError (AwsRequestInProgress and AwsThrottled are retried by the state machine).
    Ports: ``certificates`` (ExportCertificate), ``staging`` (the one place the key goes).
    """
    passphrase = validate_passphrase(generate_passphrase())
    exported = certificates.export(certificate_arn, passphrase)
    key = decrypt_private_key(exported.encrypted_private_key, passphrase)
    leaf = x509.load_pem_x509_certificate(exported.certificate.encode())
    assert_key_matches_certificate(key, leaf)
    bundle = build_bundle(exported.certificate, exported.chain, private_key=key)
    facts = certificate_facts(bundle.leaf_pem)
    serial = canonical_serial(facts.serial)
    if expected_serial and parse_serial(expected_serial) != facts.serial:
        logger.warning("ACM now holds a newer serial than the event announced; rolling out the exported one",
                       extra={"certificate_arn": certificate_arn, "announced": expected_serial, "exported": serial})
    document = json.dumps({
        "certificateArn": certificate_arn,
        "serial": serial,
        "certificate": bundle.leaf_pem,
        "chain": bundle.chain_pem,
        "privateKey": private_key_to_pem(key),
    })
    staged = staging.stage(
        secret_name(settings.secret_prefix, certificate_arn), document, kms_key_id=settings.kms_key_id,
        description=f"acm-cert-rollout bundle of {certificate_arn}",
    )
    del document, key, passphrase
    logger.info("certificate exported and staged",
                extra={"certificate_arn": certificate_arn, "serial": serial, "rollout_id": rollout_id,
                       "secret_version_id": staged.version_id})
    return ExportResult(secretArn=staged.arn, secretVersionId=staged.version_id, serial=serial,
                        notAfter=facts.not_after.isoformat(), keyAlgorithm=facts.key_algorithm)
