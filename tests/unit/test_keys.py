"""K1-K4: passphrases, decrypting ACM's encrypted PKCS#8 key, key/certificate match."""

from __future__ import annotations

import shutil
import string
import traceback
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from rollout_core.domain.errors import (
    ExportMismatch,
    InvalidPassphrase,
    KeyDecryptionFailed,
    RolloutError,
)
from rollout_core.domain.keys import (
    GENERATED_PASSPHRASE_ALPHABET,
    assert_key_matches_certificate,
    decrypt_private_key,
    generate_passphrase,
    key_algorithm_name,
    key_matches_certificate,
    private_key_to_pem,
    validate_passphrase,
)

from tests.unit.pki_fixtures import ALGORITHMS, key_pem, openssl_asn1parse, openssl_pkcs8, other_key, pki

PASSPHRASE = b"Correct-Horse_Battery.Staple~42"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def _spki(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- K1: passphrase rule -----------------------------------------------------------


def test_generated_passphrase_is_64_bytes_and_valid() -> None:
    passphrase = generate_passphrase()
    assert isinstance(passphrase, bytes)
    assert len(passphrase) == 64
    assert validate_passphrase(passphrase) == passphrase


def test_generated_passphrases_are_random_and_use_safe_alphabet() -> None:
    many = {generate_passphrase(32) for _ in range(50)}
    assert len(many) == 50
    assert set(b"".join(many).decode()) <= set(GENERATED_PASSPHRASE_ALPHABET)
    assert not set("#$%") & set(GENERATED_PASSPHRASE_ALPHABET)


@pytest.mark.parametrize("length", [4, 128])
def test_generated_passphrase_length_bounds_are_accepted(length: int) -> None:
    assert len(validate_passphrase(generate_passphrase(length))) == length


@pytest.mark.parametrize("length", [0, 3, 129, True])
def test_generated_passphrase_length_outside_rule_is_refused(length: int) -> None:
    with pytest.raises(InvalidPassphrase):
        generate_passphrase(length)


def test_str_and_bytes_passphrase_give_the_same_canonical_bytes() -> None:
    assert validate_passphrase("abcd!&*()") == validate_passphrase(b"abcd!&*()") == b"abcd!&*()"


def test_every_allowed_printable_character_is_accepted() -> None:
    allowed = "".join(ch for ch in map(chr, range(0x20, 0x7F)) if ch not in "#$%")
    assert validate_passphrase(allowed) == allowed.encode()


@pytest.mark.parametrize(
    ("passphrase", "rule"),
    [
        (b"s3cret-pass\n", "newline"),
        ("s3cret-pass\r\n", "newline"),
        (b"s3c#ret", "forbidden"),
        (b"s3c$ret", "forbidden"),
        (b"s3c%ret", "forbidden"),
        (b"abc", "fewer than 4"),
        (b"", "fewer than 4"),
        (b"a" * 129, "more than 128"),
        ("pässwörd", "non-ASCII"),
        ("pass\u00a0word".encode(), "non-ASCII"),
        (b"pass\tword", "control character"),
        (b"pass\nword", "control character"),
    ],
)
def test_passphrase_breaking_acm_rule_is_refused_with_the_rule(passphrase: bytes | str, rule: str) -> None:
    with pytest.raises(InvalidPassphrase) as info:
        validate_passphrase(passphrase)
    message = str(info.value)
    assert rule in message
    assert "ACM ExportCertificate passphrase rule" in message
    secret = passphrase if isinstance(passphrase, str) else passphrase.decode("latin-1")
    if secret.strip():
        assert secret.strip() not in message


def test_non_bytes_passphrase_is_refused() -> None:
    with pytest.raises(InvalidPassphrase, match="bytes or str"):
        validate_passphrase(1234)  # type: ignore[arg-type]


def test_trailing_newline_is_refused_not_stripped() -> None:
    # export and decrypt must use the same bytes: never silently "fix" a passphrase
    with pytest.raises(InvalidPassphrase):
        validate_passphrase(PASSPHRASE + b"\n")


# --- K2/K3: decrypting the exported key --------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_encrypted_pkcs8_key_decrypts_and_matches_its_certificate(algorithm: str) -> None:
    p = pki(algorithm)
    key = decrypt_private_key(p.encrypted_key_pem(PASSPHRASE), PASSPHRASE)
    assert _spki(key) == _spki(p.leaf_key)
    assert key_matches_certificate(key, p.leaf_cert)
    assert_key_matches_certificate(key, p.leaf_cert)


def test_exported_key_is_encrypted_pkcs8() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE)
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")


def test_str_passphrase_decrypts_key_exported_with_same_bytes() -> None:
    pem = pki("EC_prime256v1").encrypted_key_pem(PASSPHRASE)
    key = decrypt_private_key(pem.encode(), PASSPHRASE.decode())
    assert key_matches_certificate(key, pki("EC_prime256v1").leaf_cert)


def test_crlf_encrypted_key_decrypts() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE).replace("\n", "\r\n")
    assert key_matches_certificate(decrypt_private_key(pem, PASSPHRASE), pki("RSA_2048").leaf_cert)


@needs_openssl
def test_pbes2_key_without_explicit_prf_decrypts(tmp_path: Path) -> None:
    p = pki("RSA_2048")
    pem = openssl_pkcs8(p.plain_key_pem(), PASSPHRASE, tmp_path, prf="hmacWithSHA1")
    structure = openssl_asn1parse(pem, tmp_path)
    assert "PBES2" in structure and "PBKDF2" in structure
    assert "hmacWith" not in structure  # default PRF: no AlgorithmIdentifier in the DER
    assert key_matches_certificate(decrypt_private_key(pem, PASSPHRASE), p.leaf_cert)


@needs_openssl
def test_pbes2_key_with_openssl_default_prf_decrypts(tmp_path: Path) -> None:
    p = pki("EC_secp384r1")
    pem = openssl_pkcs8(p.plain_key_pem(), PASSPHRASE, tmp_path, prf=None)
    structure = openssl_asn1parse(pem, tmp_path)
    assert "PBES2" in structure  # OpenSSL 3 writes hmacWithSHA256 explicitly here
    assert key_matches_certificate(decrypt_private_key(pem, PASSPHRASE), p.leaf_cert)


@needs_openssl
def test_pbes2_key_with_explicit_hmac_sha256_prf_decrypts(tmp_path: Path) -> None:
    p = pki("EC_prime256v1")
    pem = openssl_pkcs8(p.plain_key_pem(), PASSPHRASE, tmp_path, prf="hmacWithSHA256")
    assert "hmacWithSHA256" in openssl_asn1parse(pem, tmp_path)
    assert key_matches_certificate(decrypt_private_key(pem, PASSPHRASE), p.leaf_cert)


def test_unencrypted_pkcs8_key_loads_without_passphrase() -> None:
    p = pki("RSA_3072")
    key = decrypt_private_key(p.plain_key_pem(), None)
    assert key_matches_certificate(key, p.leaf_cert)


def test_wrong_passphrase_fails_without_leaking_passphrase_or_key() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE)
    wrong = b"Wrong-Passphrase-123"
    with pytest.raises(KeyDecryptionFailed) as info:
        decrypt_private_key(pem, wrong)
    _assert_no_secret(info.value, pem, wrong, PASSPHRASE)
    assert info.value.__cause__ is None


def test_encrypted_key_without_passphrase_fails() -> None:
    with pytest.raises(KeyDecryptionFailed, match="no passphrase"):
        decrypt_private_key(pki("RSA_2048").encrypted_key_pem(PASSPHRASE), None)


def test_invalid_decrypt_passphrase_is_refused_by_rule() -> None:
    with pytest.raises(InvalidPassphrase):
        decrypt_private_key(pki("RSA_2048").encrypted_key_pem(PASSPHRASE), PASSPHRASE + b"\n")


def test_traditional_rsa_key_is_refused() -> None:
    traditional = (
        pki("RSA_2048")
        .leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(KeyDecryptionFailed, match="RSA PRIVATE KEY") as info:
        decrypt_private_key(traditional, PASSPHRASE)
    _assert_no_secret(info.value, traditional, PASSPHRASE)


def test_certificate_instead_of_key_is_refused_naming_the_label() -> None:
    with pytest.raises(KeyDecryptionFailed, match="CERTIFICATE"):
        decrypt_private_key(pki("RSA_2048").leaf_pem, PASSPHRASE)


def test_corrupt_key_fails() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE)
    lines = pem.splitlines()
    lines[3] = "A" * len(lines[3])
    corrupt = "\n".join(lines) + "\n"
    with pytest.raises(KeyDecryptionFailed) as info:
        decrypt_private_key(corrupt, PASSPHRASE)
    _assert_no_secret(info.value, corrupt, PASSPHRASE)


def test_two_key_blocks_are_refused() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE)
    with pytest.raises(KeyDecryptionFailed, match="exactly one"):
        decrypt_private_key(pem + pem, PASSPHRASE)


def test_key_pem_next_to_certificate_is_found() -> None:
    p = pki("EC_prime256v1")
    key = decrypt_private_key(p.leaf_pem + p.encrypted_key_pem(PASSPHRASE), PASSPHRASE)
    assert key_matches_certificate(key, p.leaf_cert)


# --- K3: re-serializing ------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_decrypted_key_is_written_as_plain_pkcs8(algorithm: str) -> None:
    p = pki(algorithm)
    key = decrypt_private_key(p.encrypted_key_pem(PASSPHRASE), PASSPHRASE)
    pem = private_key_to_pem(key)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert pem.endswith("-----END PRIVATE KEY-----\n")
    assert "\r" not in pem
    assert key_matches_certificate(serialization.load_pem_private_key(pem.encode(), None), p.leaf_cert)


def test_key_is_written_encrypted_when_target_asks_for_it() -> None:
    p = pki("RSA_2048")
    pem = private_key_to_pem(p.leaf_key, b"target-password")
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert key_matches_certificate(decrypt_private_key(pem, b"target-password"), p.leaf_cert)


def test_writing_encrypted_key_with_invalid_passphrase_is_refused() -> None:
    with pytest.raises(InvalidPassphrase):
        private_key_to_pem(pki("RSA_2048").leaf_key, b"has$dollar")


# --- K2/K4: key and certificate match by public key ----------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_key_of_another_certificate_is_an_export_mismatch(algorithm: str) -> None:
    p = pki(algorithm)
    other = other_key(algorithm)
    assert not key_matches_certificate(other, p.leaf_cert)
    with pytest.raises(ExportMismatch, match="export mismatch") as info:
        assert_key_matches_certificate(other, p.leaf_cert)
    _assert_no_secret(info.value, key_pem(other))
    assert "web.internal.example" in str(info.value)


def test_ec_key_against_rsa_certificate_is_a_mismatch_not_a_crash() -> None:
    assert not key_matches_certificate(pki("EC_prime256v1").leaf_key, pki("RSA_2048").leaf_cert)
    with pytest.raises(ExportMismatch, match="EC_prime256v1"):
        assert_key_matches_certificate(pki("EC_prime256v1").leaf_key, pki("RSA_2048").leaf_cert)


def test_p256_key_against_p384_certificate_is_a_mismatch() -> None:
    assert not key_matches_certificate(pki("EC_prime256v1").leaf_key, pki("EC_secp384r1").leaf_cert)


def test_certificate_given_as_pem_text_is_matched() -> None:
    p = pki("EC_secp384r1")
    assert key_matches_certificate(p.leaf_key, p.leaf_pem)
    assert key_matches_certificate(p.leaf_key.public_key(), p.leaf_pem.encode())


def test_non_certificate_text_is_an_export_mismatch() -> None:
    with pytest.raises(ExportMismatch):
        key_matches_certificate(pki("RSA_2048").leaf_key, "not a certificate")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_key_algorithm_names_follow_acm(algorithm: str) -> None:
    assert key_algorithm_name(pki(algorithm).leaf_key) == algorithm


# --- no secret in any error ----------------------------------------------------------


def _assert_no_secret(error: Exception, *secrets: str | bytes) -> None:
    assert isinstance(error, RolloutError)
    message = str(error) + repr(error) + " ".join(map(str, error.args))
    assert "-----BEGIN" not in message
    assert "PRIVATE KEY-----" not in message
    for secret in secrets:
        text = secret.decode("latin-1") if isinstance(secret, bytes) else secret
        assert text not in message
        body = [line for line in text.splitlines() if line and not line.startswith("-----")]
        for line in body:
            if len(line) >= 16:
                assert line not in message


def test_error_messages_redact_pem_blocks_defensively() -> None:
    pem = pki("RSA_2048").plain_key_pem()
    error = KeyDecryptionFailed(f"bad thing with {pem} attached")
    _assert_no_secret(error, pem)
    assert "[PEM block redacted]" in str(error)


def test_no_error_in_the_key_workflow_contains_the_passphrase() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE)
    candidates: list[Exception] = []
    for call in (
        lambda: decrypt_private_key(pem, b"Not-The-Passphrase"),
        lambda: decrypt_private_key(pem, PASSPHRASE + b"#"),
        lambda: validate_passphrase(PASSPHRASE + b"%"),
        lambda: validate_passphrase(PASSPHRASE * 5),
        lambda: assert_key_matches_certificate(other_key("RSA_2048"), pki("RSA_2048").leaf_cert),
    ):
        with pytest.raises(RolloutError) as info:
            call()
        candidates.append(info.value)
    for error in candidates:
        _assert_no_secret(error, pem, PASSPHRASE, b"Not-The-Passphrase")


def test_generated_alphabet_is_printable_ascii() -> None:
    assert set(GENERATED_PASSPHRASE_ALPHABET) <= set(string.printable) - set(string.whitespace)


# --- no secret in a chained exception (__context__ / __cause__ / formatted traceback) ---------


def _chain_texts(error: BaseException) -> list[str]:
    """Everything an exception's chain exposes: repr of each linked exception and its args,
    and the formatted traceback (what a logger's exc_info prints)."""
    texts = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [repr(current), repr(current.__context__), repr(current.__cause__)]
        texts += [repr(arg) for arg in current.args]
        current = current.__context__ or current.__cause__
    return texts


def _assert_chain_clean(error: BaseException, *secrets_: str | bytes) -> None:
    assert error.__cause__ is None
    assert error.__context__ is None, f"chained {type(error.__context__).__name__}"
    for text in _chain_texts(error):
        for secret in secrets_:
            for form in {secret if isinstance(secret, str) else secret.decode("latin-1"), repr(secret)}:
                assert form not in text
                body_lines = [line for line in form.splitlines() if len(line) >= 16 and not line.startswith("-----")]
                assert not any(line in text for line in body_lines)


@pytest.mark.parametrize("secret", ["Pässphrase-Secret-42", "secret-\u202e-passphrase", "秘密のパスフレーズ"])
def test_non_ascii_passphrase_refusal_chains_no_passphrase(secret: str) -> None:
    with pytest.raises(InvalidPassphrase, match="non-ASCII") as info:
        validate_passphrase(secret)
    _assert_chain_clean(info.value, secret)


def test_non_ascii_decrypt_passphrase_refusal_chains_no_passphrase() -> None:
    pem = pki("RSA_2048").encrypted_key_pem(PASSPHRASE)
    secret = "Pässphrase-Secret-42"
    with pytest.raises(InvalidPassphrase) as info:
        decrypt_private_key(pem, secret)
    _assert_chain_clean(info.value, secret, pem)


def test_non_ascii_key_bytes_refusal_chains_no_key() -> None:
    pem = pki("RSA_2048").plain_key_pem()
    lines = pem.splitlines()
    lines[5] = lines[5][:10] + "\u00e9" + lines[5][11:]  # one non-ASCII byte inside the key body
    key_bytes = ("\n".join(lines) + "\n").encode("utf-8")
    with pytest.raises(KeyDecryptionFailed, match="not ASCII") as info:
        decrypt_private_key(key_bytes, None)
    _assert_chain_clean(info.value, key_bytes, pem)


@pytest.mark.parametrize("case", ["wrong-passphrase", "corrupt-encrypted", "corrupt-plain"])
def test_decrypt_refusal_chains_no_library_error(case: str) -> None:
    p = pki("RSA_2048")
    if case == "corrupt-plain":
        pem, passphrase = p.plain_key_pem(), None
    else:
        pem, passphrase = p.encrypted_key_pem(PASSPHRASE), PASSPHRASE
    if case.startswith("corrupt"):
        lines = pem.splitlines()
        lines[3] = "A" * len(lines[3])
        pem = "\n".join(lines) + "\n"
    elif case == "wrong-passphrase":
        passphrase = b"Wrong-Passphrase-123"
    with pytest.raises(KeyDecryptionFailed) as info:
        decrypt_private_key(pem, passphrase)
    _assert_chain_clean(info.value, pem, PASSPHRASE, b"Wrong-Passphrase-123")


def test_key_given_as_certificate_refusal_chains_no_key() -> None:
    key_text = pki("RSA_2048").plain_key_pem().replace("PRIVATE KEY", "CERTIFICATE") + "\u00e9"
    with pytest.raises(ExportMismatch) as info:
        assert_key_matches_certificate(other_key("RSA_2048"), key_text)
    _assert_chain_clean(info.value, key_text)
