"""ExportCertificate (logic/export.py) on the fakes: a fresh passphrase per export, the key
checked against the certificate by public key, the bundle in issuer order, and only
references out. The key reaches the staging fake and nothing else (DESIGN.md hard rules)."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rollout_core.adapters.errors import AwsRequestInProgress
from rollout_core.domain.errors import ExportMismatch, InvalidBundle
from rollout_core.domain.serials import canonical_serial
from rollout_core.domain.staging import staged_secret_name
from rollout_core.logic.export import export_certificate
from rollout_core.settings import ExportSettings

from tests.fakes import recorded_text
from tests.fakes.world import ARN, EXECUTION_ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import ALGORITHMS, other_key, pki

SETTINGS = ExportSettings(secret_prefix="acm-cert-rollout", kms_key_id="alias/cert-rollout", inventory_table="inv")
NAME = staged_secret_name("acm-cert-rollout", ARN, ROLLOUT_ID)


def run(w: World, expected_serial: str | None = None):
    if not w.inventory.items:
        w.inventory.add(target("web-1"))
    return export_certificate(ARN, expected_serial, EXECUTION_ARN, ["web-1"], settings=SETTINGS,
                              certificates=w.certificates, staging=w.staging, inventory=w.inventory,
                              passwords=w.passwords, executions=w.executions)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_export_stages_a_decrypted_matching_bundle_and_returns_references(algorithm: str) -> None:
    w = world(algorithm)
    result = run(w, w.certificates.serial(ARN))
    leaf = pki(algorithm).leaf_cert
    assert result.serial == canonical_serial(leaf.serial_number)
    assert result.secretArn == f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:{NAME}-AbCdEf"
    assert result.secretVersionId == "version-1"
    assert result.keyAlgorithm and result.notAfter.startswith(leaf.not_valid_after_utc.date().isoformat())
    staged = w.staging.latest(NAME)
    assert staged["serial"] == result.serial and staged["certificateArn"] == ARN
    key = serialization.load_pem_private_key(staged["privateKey"].encode(), password=None)  # decrypted
    assert key.public_key() == leaf.public_key()
    # chain in issuer order: intermediate first, each certificate signed by the next
    chain = x509.load_pem_x509_certificates(staged["chain"].encode())
    assert chain[0].subject == leaf.issuer
    assert w.staging.kms_keys[NAME] == "alias/cert-rollout"
    # the trust anchor VerifyTarget checks served chains against: the root ending the exported chain
    assert result.trustAnchor == pki(algorithm).root_pem and "PRIVATE" not in result.model_dump_json()


def test_key_material_and_passphrase_reach_only_the_staging_store(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    w = world()
    result = run(w)
    [passphrase] = w.certificates.passphrases()
    staged = w.staging.latest(NAME)
    secrets_out = [passphrase.decode(), *staged["privateKey"].splitlines()[1:-1]]  # every base64 line of the key
    logs = "\n".join(json.dumps(vars(r), default=repr) for r in caplog.records)
    assert "certificate exported and staged" in logs
    elsewhere = result.model_dump_json() + recorded_text(*(f for f in w.fakes() if f is not w.certificates)) + logs
    assert "PRIVATE KEY" not in elsewhere
    for secret in secrets_out:
        assert secret not in elsewhere
    assert passphrase.decode() not in w.staging.secrets[NAME][-1]  # the staged key is not encrypted with it


def test_every_export_uses_a_fresh_passphrase() -> None:
    w = world()
    run(w)
    run(w)
    first, second = w.certificates.passphrases()
    assert first != second and 4 <= len(first) <= 128
    assert not set(first) & set(b"#$%")
    assert len(w.staging.secrets[NAME]) == 2


def test_a_key_that_is_not_the_certificates_is_export_mismatch_and_nothing_is_staged() -> None:
    w = world()
    w.certificates.add(ARN, pki(), export_key=other_key())
    with pytest.raises(ExportMismatch) as raised:
        run(w)
    assert w.staging.operations() == []
    assert "PRIVATE KEY" not in str(raised.value)


def test_ec_key_against_an_rsa_certificate_is_export_mismatch() -> None:
    w = world("RSA_2048")
    w.certificates.add(ARN, pki("RSA_2048"), export_key=other_key("EC_prime256v1"))
    with pytest.raises(ExportMismatch):
        run(w)
    assert w.staging.operations() == []


def test_a_chain_of_another_pki_is_an_invalid_bundle() -> None:
    w = world()
    w.certificates.add(ARN, pki(), chain_pem=pki("RSA_2048", label="other").chain_pem)
    with pytest.raises(InvalidBundle):
        run(w)
    assert w.staging.operations() == []


def test_a_newer_serial_in_acm_than_announced_is_the_one_rolled_out() -> None:
    w = world()
    result = run(w, expected_serial="01:02:03")
    assert result.serial == w.certificates.serial(ARN) != "01:02:03"


def test_request_in_progress_propagates_by_name_for_the_state_machines_retry() -> None:
    w = world()
    w.certificates.export_errors.append(AwsRequestInProgress("ExportCertificate", "RequestInProgressException",
                                                             "the certificate is being renewed"))
    with pytest.raises(AwsRequestInProgress):
        run(w)
    assert w.staging.operations() == []
    assert run(w).secretVersionId == "version-1"  # the retry succeeds
