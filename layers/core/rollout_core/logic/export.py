"""ExportCertificate: export with a fresh passphrase, check the key and the chain, stage the
bundle in the rollout's own Secrets Manager secret under the customer-managed KMS key, readable
only from the rollout's target nodes (logic/staging.py), with the keystore passwords those
targets name; then sweep the staged bundles of rollouts that have ended.

Rules: K1 (one canonical passphrase byte string for export and decrypt, ACM's alphabet),
K2 (decrypt right after export and match the key to the certificate by public key, else
ExportMismatch and nothing is installed anywhere), K5 (leaf first, each signed by the next).
Only references leave this function: the secret's ARN and version id, the serial, and the
trust anchor (the public root certificate ending the exported chain: what VerifyTarget checks
served chains against; NoTrustAnchor when the chain does not end in a self-signed CA).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from rollout_core import ports
from rollout_core.adapters.errors import AwsPermanentError
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
from rollout_core.domain.staging import PasswordSecretOutsidePrefix, keystore_secret_name
from rollout_core.domain.tls_checks import trust_anchor
from rollout_core.logic.staging import stage_rollout_bundle, sweep_ended_rollouts
from rollout_core.models import Target
from rollout_core.observability import logger
from rollout_core.settings import ExportSettings


def rollout_targets(certificate_arn: str, target_ids: Sequence[str], *,
                    inventory: ports.Inventory) -> tuple[list[str], list[str]]:
    """(managed node ids, keystore password secret ids) of the rollout's targets: the inventory
    items of ``certificate_arn`` whose targetId is one of ``target_ids`` (ValidateEvent's list; a
    target added since is not part of this rollout). An item that does not validate is skipped:
    its own iteration fails with the reason, and its node is not allowed to read the bundle.
    Both lists sorted, without duplicates. Raises a named AwsError (the inventory read)."""
    wanted = set(target_ids)
    nodes: set[str] = set()
    secrets: set[str] = set()
    for item in inventory.items_for(certificate_arn):
        if item.get("targetId") not in wanted:
            continue
        try:
            target = Target.model_validate(item)
        except ValidationError:
            logger.warning("invalid inventory item left out of the staged bundle's readers",
                           extra={"certificate_arn": certificate_arn, "target_id": str(item.get("targetId"))})
            continue
        nodes.add(target.instanceId)
        secrets.update(f.passwordSecret for f in target.files if f.passwordSecret)
    return sorted(nodes), sorted(secrets)


def keystore_passwords(secret_ids: Sequence[str], *, secret_prefix: str,
                       passwords: ports.KeystorePasswords) -> tuple[dict[str, str], dict[str, str]]:
    """({secret id: password}, {secret id: why it is missing}) for the targets' passwordSecrets.

    A secret outside ``<SecretPrefix>/keystores/`` is not read; a permanent read error
    (AccessDenied, ResourceNotFound, no SecretString) is recorded by its code only: the target
    that needs it then fails on its node with that reason, the others install. Raises a
    transient named AwsError (throttled, unavailable: the state machine retries the export).
    """
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for secret_id in secret_ids:
        try:
            keystore_secret_name(secret_prefix, secret_id)
            found[secret_id] = passwords.read(secret_id)
        except PasswordSecretOutsidePrefix as e:
            missing[secret_id] = str(e)
        except AwsPermanentError as e:
            missing[secret_id] = f"ExportCertificate could not read it: {e.code}"
    if missing:
        logger.warning("keystore passwords not staged", extra={"secrets": sorted(missing)})
    return found, missing


def export_certificate(certificate_arn: str, expected_serial: str | None, execution_arn: str,
                       target_ids: Sequence[str], *, settings: ExportSettings, certificates: ports.Certificates,
                       staging: ports.BundleStaging, inventory: ports.Inventory,
                       passwords: ports.KeystorePasswords, executions: ports.Executions) -> ExportResult:
    """Export ``certificate_arn`` and stage it for the targets ``target_ids``; returns references only.

    ``expected_serial`` is what ValidateEvent saw; when ACM has renewed again since, the
    exported (newer) serial is the one rolled out, and a warning says so. ``execution_arn``:
    the rollout's execution ($$.Execution.Id; its name is the rollout id).
    Raises InvalidPassphrase, KeyDecryptionFailed, ExportMismatch, InvalidBundle, NoTrustAnchor,
    StagingPolicyTooLarge, InvalidStagingName (domain errors), or a named AwsError
    (AwsRequestInProgress and AwsThrottled are retried by the state machine).
    Ports: ``certificates`` (ExportCertificate), ``inventory`` (the targets' nodes and password
    secrets), ``passwords`` (the keystore passwords), ``staging`` (the one place the key goes),
    ``executions`` (the sweep: which staged rollouts have ended).
    """
    rollout_id = execution_arn.rsplit(":", 1)[-1]
    nodes, password_secrets = rollout_targets(certificate_arn, target_ids, inventory=inventory)
    passphrase = validate_passphrase(generate_passphrase())
    exported = certificates.export(certificate_arn, passphrase)
    key = decrypt_private_key(exported.encrypted_private_key, passphrase)
    leaf = x509.load_pem_x509_certificate(exported.certificate.encode())
    assert_key_matches_certificate(key, leaf)
    bundle = build_bundle(exported.certificate, exported.chain, private_key=key)
    anchor = trust_anchor([x509.load_pem_x509_certificate(pem.encode()) for pem in bundle.chain_pems])
    facts = certificate_facts(bundle.leaf_pem)
    serial = canonical_serial(facts.serial)
    if expected_serial and parse_serial(expected_serial) != facts.serial:
        logger.warning("ACM now holds a newer serial than the event announced; rolling out the exported one",
                       extra={"certificate_arn": certificate_arn, "announced": expected_serial, "exported": serial})
    found, missing = keystore_passwords(password_secrets, secret_prefix=settings.secret_prefix, passwords=passwords)
    document = json.dumps({
        "certificateArn": certificate_arn,
        "serial": serial,
        "certificate": bundle.leaf_pem,
        "chain": bundle.chain_pem,
        "privateKey": private_key_to_pem(key),
        "passwords": found,  # {passwordSecret as the inventory names it: password}
        "passwordErrors": missing,  # {passwordSecret: why it is not staged}: no secret in it
    })
    staged = stage_rollout_bundle(document, secret_prefix=settings.secret_prefix, certificate_arn=certificate_arn,
                                  execution_arn=execution_arn, instance_ids=nodes, kms_key_id=settings.kms_key_id,
                                  staging=staging)
    del document, key, passphrase, found
    logger.info("certificate exported and staged",
                extra={"certificate_arn": certificate_arn, "serial": serial, "rollout_id": rollout_id,
                       "secret_version_id": staged.version_id, "reader_nodes": len(nodes)})
    sweep_ended_rollouts(settings.secret_prefix, current_execution_arn=execution_arn, staging=staging,
                         executions=executions)
    return ExportResult(secretArn=staged.arn, secretVersionId=staged.version_id, serial=serial,
                        notAfter=facts.not_after.isoformat(), keyAlgorithm=facts.key_algorithm,
                        trustAnchor=anchor.public_bytes(Encoding.PEM).decode("ascii"))
