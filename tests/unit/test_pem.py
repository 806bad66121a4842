"""K5: PEM normalization, bundle order and signatures, certificate facts."""

from __future__ import annotations

import base64
import datetime as dt
import textwrap

import pydantic
import pytest
from rollout_core.domain.errors import InvalidBundle, MalformedPem, RolloutError
from rollout_core.domain.pem import Bundle, build_bundle, certificate_facts, normalize_pem, split_pem_blocks
from rollout_core.domain.serials import canonical_serial

from tests.unit.pki_fixtures import (
    ALGORITHMS,
    LEAF_SANS,
    key_pem,
    make_certificate,
    make_key,
    other_key,
    pki,
    to_pem,
)

# --- split / normalize ---------------------------------------------------------------


def _unwrapped(pem: str) -> str:
    """The same block with its base64 on one long line, CRLF endings."""
    lines = pem.strip().splitlines()
    return "\r\n".join([lines[0], "".join(lines[1:-1]), lines[-1]]) + "\r\n"


def test_normalized_pem_has_lf_one_newline_between_blocks_and_final_newline() -> None:
    p = pki("RSA_2048")
    messy = (
        "Bag Attributes\r\n    friendlyName: web\r\nsubject=/CN=web\r\n\r\n"
        + p.leaf_pem.replace("\n", "\r\n")
        + "\r\n\r\n   \r\nissuer=/CN=int\r\n"
        + _unwrapped(p.intermediate_pem)
        + "\n\n\n"
        + p.root_pem.rstrip("\n")
    )
    assert normalize_pem(messy) == p.leaf_pem + p.intermediate_pem + p.root_pem


def test_normalize_is_idempotent() -> None:
    text = pki("EC_prime256v1").chain_pem
    assert normalize_pem(normalize_pem(text)) == normalize_pem(text) == text


def test_base64_is_rewrapped_at_64_columns() -> None:
    p = pki("RSA_4096")
    body = "".join(p.leaf_pem.splitlines()[1:-1])
    wrapped76 = "\n".join(textwrap.wrap(body, 76))
    text = f"-----BEGIN CERTIFICATE-----\n{wrapped76}\n-----END CERTIFICATE-----"
    normalized = normalize_pem(text)
    assert normalized == p.leaf_pem
    assert max(len(line) for line in normalized.splitlines()) == 64


def test_split_returns_labels_in_order() -> None:
    p = pki("EC_secp384r1")
    blocks = split_pem_blocks(p.leaf_pem + p.plain_key_pem() + p.chain_pem)
    assert [label for label, _ in blocks] == ["CERTIFICATE", "PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"]
    assert blocks[0][1] == p.leaf_pem


def test_split_accepts_bytes() -> None:
    assert split_pem_blocks(pki("RSA_2048").leaf_pem.encode()) == [("CERTIFICATE", pki("RSA_2048").leaf_pem)]


def test_text_without_blocks_splits_to_nothing_but_does_not_normalize() -> None:
    assert split_pem_blocks("hello\n") == []
    with pytest.raises(MalformedPem, match="no PEM block"):
        normalize_pem("hello\n")


def test_rfc1421_headers_are_kept() -> None:
    text = (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00FF\n\n"
        "AAAA\n-----END RSA PRIVATE KEY-----\n"
    )
    assert normalize_pem(text) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-----BEGIN CERTIFICATE-----\nAAAA\n", "without an END"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n", "closed by END"),
        ("-----END CERTIFICATE-----\n", "without a BEGIN"),
        ("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "empty"),
        ("-----BEGIN CERTIFICATE-----\nAAA*\n-----END CERTIFICATE-----\n", "not base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n", "not valid base64"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----BEGIN CERTIFICATE-----\n", "before its END"),
    ],
)
def test_malformed_pem_is_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(MalformedPem, match=problem):
        split_pem_blocks(text)


def test_malformed_key_pem_error_does_not_contain_the_key() -> None:
    key = pki("RSA_2048").plain_key_pem()
    broken = key.replace("-----END PRIVATE KEY-----", "-----END CERTIFICATE-----")
    with pytest.raises(MalformedPem) as info:
        split_pem_blocks(broken)
    message = str(info.value)
    assert "PRIVATE KEY" in message  # names the label...
    for line in key.splitlines()[1:-1]:
        assert line not in message  # ...never the content


# --- bundles ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_leaf_then_issuers_bundle_is_accepted(algorithm: str) -> None:
    p = pki(algorithm)
    bundle = build_bundle(p.leaf_pem, p.chain_pem, p.leaf_key)
    assert bundle.leaf_pem == p.leaf_pem
    assert bundle.chain_pems == [p.intermediate_pem, p.root_pem]
    assert bundle.chain_pem == p.intermediate_pem + p.root_pem
    assert bundle.fullchain_pem == p.leaf_pem + p.intermediate_pem + p.root_pem
    assert bundle.leaf_serial == p.leaf_cert.serial_number


def test_bundle_output_is_normalized_from_messy_input() -> None:
    p = pki("RSA_2048")
    bundle = build_bundle(
        "subject=web\r\n" + p.leaf_pem.replace("\n", "\r\n"),
        _unwrapped(p.intermediate_pem) + "\r\n\r\n" + p.root_pem.rstrip(),
    )
    assert bundle.fullchain_pem == p.leaf_pem + p.chain_pem
    assert "\r" not in bundle.fullchain_pem and "\n\n" not in bundle.fullchain_pem
    assert bundle.fullchain_pem.endswith("-----END CERTIFICATE-----\n")


def test_chain_first_bundle_is_refused() -> None:
    p = pki("RSA_2048")
    with pytest.raises(InvalidBundle, match=r"position 0 .*CA certificate.*leaf must come first"):
        build_bundle(p.intermediate_pem, p.leaf_pem + p.root_pem)


def test_leaf_at_the_end_of_the_chain_is_refused() -> None:
    p = pki("EC_prime256v1")
    with pytest.raises(InvalidBundle, match=r"position 3 .*not a CA certificate"):
        build_bundle(p.leaf_pem, p.chain_pem + p.leaf_pem)


def test_chain_in_reverse_order_is_refused_as_wrong_order() -> None:
    p = pki("RSA_2048")
    with pytest.raises(InvalidBundle, match=r"wrong order: position 0 .*issued by position 2 .*Issuing CA"):
        build_bundle(p.leaf_pem, p.root_pem + p.intermediate_pem)


def test_chain_with_missing_intermediate_is_refused() -> None:
    p = pki("EC_secp384r1")
    with pytest.raises(
        InvalidBundle, match=r"missing issuer: position 0 .*was issued by .*Issuing CA.*not in the bundle"
    ):
        build_bundle(p.leaf_pem, p.root_pem)


def test_chain_ending_in_a_missing_issuer_is_refused() -> None:
    p = pki("RSA_2048")
    with pytest.raises(
        InvalidBundle, match=r"chain ends in a missing issuer: position 1 .*Issuing CA.*Root CA"
    ):
        build_bundle(p.leaf_pem, p.intermediate_pem)


def test_leaf_without_chain_is_a_missing_issuer_by_default() -> None:
    p = pki("RSA_2048")
    for empty in ("", None):
        with pytest.raises(InvalidBundle, match="chain ends in a missing issuer: position 0"):
            build_bundle(p.leaf_pem, empty)


def test_chain_without_root_is_accepted_when_root_not_required() -> None:
    p = pki("EC_prime256v1")
    bundle = build_bundle(p.leaf_pem, p.intermediate_pem, p.leaf_key, require_root=False)
    assert bundle.chain_pems == [p.intermediate_pem]
    assert build_bundle(p.leaf_pem, None, require_root=False).chain_pem == ""


def test_self_signed_leaf_alone_is_accepted() -> None:
    key = make_key("EC_prime256v1")
    cert = make_certificate(
        subject_cn="solo.example",
        public_key=key.public_key(),
        issuer_cn="solo.example",
        issuer_key=key,
        ca=False,
    )
    assert build_bundle(to_pem(cert), "", key).fullchain_pem == to_pem(cert)


def test_certificate_with_wrong_issuer_signature_is_refused() -> None:
    p = pki("RSA_2048")
    # An impostor intermediate: same name as the real one, another key, signed by the root.
    impostor_key = other_key("RSA_2048")
    impostor = make_certificate(
        subject_cn=f"Example main Issuing CA {p.algorithm}",
        public_key=impostor_key.public_key(),
        issuer_cn=f"Example main Root CA {p.algorithm}",
        issuer_key=p.root_key,
        ca=True,
        path_length=0,
    )
    with pytest.raises(InvalidBundle, match=r"position 0 .*signature does not verify"):
        build_bundle(p.leaf_pem, to_pem(impostor) + p.root_pem)


def test_root_not_signed_by_itself_is_a_missing_issuer() -> None:
    p = pki("RSA_2048")
    # Names itself as issuer but is signed by another key: not a real self-signed root.
    fake_root = make_certificate(
        subject_cn=f"Example main Root CA {p.algorithm}",
        public_key=p.root_key.public_key(),
        issuer_cn=f"Example main Root CA {p.algorithm}",
        issuer_key=other_key("RSA_2048"),
        ca=True,
    )
    with pytest.raises(InvalidBundle):
        build_bundle(p.leaf_pem, p.intermediate_pem + to_pem(fake_root))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_bundle_whose_leaf_does_not_match_the_key_is_refused(algorithm: str) -> None:
    p = pki(algorithm)
    wrong = other_key(algorithm)
    with pytest.raises(InvalidBundle, match=r"position 0 .*does not match the private key") as info:
        build_bundle(p.leaf_pem, p.chain_pem, wrong)
    _assert_no_key(info.value, key_pem(wrong))


def test_ec_leaf_under_rsa_ca_is_accepted() -> None:
    rsa = pki("RSA_2048")
    leaf_key = other_key("EC_prime256v1")
    leaf = make_certificate(
        subject_cn="ec.internal.example",
        public_key=leaf_key.public_key(),
        issuer_cn=f"Example main Issuing CA {rsa.algorithm}",
        issuer_key=rsa.intermediate_key,
        ca=False,
        sans=("ec.internal.example",),
    )
    bundle = build_bundle(to_pem(leaf), rsa.chain_pem, leaf_key)
    assert bundle.chain_pems == [rsa.intermediate_pem, rsa.root_pem]


def test_private_key_inside_certificate_input_is_refused_without_leaking_it() -> None:
    p = pki("RSA_2048")
    with pytest.raises(InvalidBundle, match="'PRIVATE KEY' block") as info:
        build_bundle(p.leaf_pem + p.plain_key_pem(), p.chain_pem)
    _assert_no_key(info.value, p.plain_key_pem())
    with pytest.raises(InvalidBundle, match="chain: block 1 is a 'PRIVATE KEY' block"):
        build_bundle(p.leaf_pem, p.intermediate_pem + p.plain_key_pem() + p.root_pem)


def test_fullchain_given_as_certificate_is_refused() -> None:
    p = pki("RSA_2048")
    with pytest.raises(InvalidBundle, match="exactly one CERTIFICATE block"):
        build_bundle(p.leaf_pem + p.chain_pem, "")


def test_garbage_certificate_is_refused() -> None:
    junk = (
        "-----BEGIN CERTIFICATE-----\n"
        + base64.b64encode(b"not a certificate").decode()
        + "\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(InvalidBundle, match="position 1 cannot be parsed"):
        build_bundle(pki("RSA_2048").leaf_pem, junk)
    with pytest.raises(InvalidBundle, match="certificate: block 0 .*not valid base64|certificate: "):
        build_bundle("-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n", "")


def test_bundle_is_immutable_and_carries_no_key() -> None:
    p = pki("RSA_2048")
    bundle = build_bundle(p.leaf_pem, p.chain_pem, p.leaf_key)
    with pytest.raises(pydantic.ValidationError):
        bundle.leaf_pem = "x"  # type: ignore[misc]
    assert "PRIVATE KEY" not in bundle.model_dump_json()
    assert set(Bundle.model_fields) == {"leaf_pem", "chain_pems"}


def _assert_no_key(error: Exception, pem: str) -> None:
    assert isinstance(error, RolloutError)
    message = str(error)
    assert "-----BEGIN" not in message
    for line in pem.splitlines()[1:-1]:
        assert line not in message


# --- certificate facts ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_certificate_facts_of_a_leaf(algorithm: str) -> None:
    p = pki(algorithm)
    facts = certificate_facts(p.leaf_pem)
    assert facts.serial == p.leaf_cert.serial_number
    assert facts.canonical_serial == canonical_serial(p.leaf_cert.serial_number)
    assert facts.subject_cn == "web.internal.example"
    assert facts.sans == list(LEAF_SANS)
    assert facts.issuer_cn == f"Example main Issuing CA {algorithm}"
    assert facts.key_algorithm == algorithm
    assert facts.not_before.tzinfo is not None and facts.not_after.tzinfo is not None
    assert facts.not_after - facts.not_before == dt.timedelta(days=395, minutes=5)
    assert not facts.is_ca and not facts.self_signed


def test_certificate_facts_of_a_root() -> None:
    facts = certificate_facts(pki("EC_prime256v1").root_pem)
    assert facts.is_ca and facts.self_signed
    assert facts.sans == []
    assert facts.subject_cn == facts.issuer_cn


def test_certificate_facts_use_the_first_certificate_of_a_fullchain() -> None:
    p = pki("RSA_2048")
    assert certificate_facts(p.leaf_pem + p.chain_pem).serial == p.leaf_cert.serial_number
    assert certificate_facts(p.leaf_cert).serial == p.leaf_cert.serial_number


def test_certificate_facts_list_ip_sans() -> None:
    key = other_key("EC_prime256v1")
    cert = make_certificate(
        subject_cn="10.0.0.5",
        public_key=key.public_key(),
        issuer_cn="x",
        issuer_key=key,
        ca=False,
        sans=("host.example", "10.0.0.5", "::1"),
    )
    assert certificate_facts(to_pem(cert)).sans == ["host.example", "10.0.0.5", "::1"]


def test_certificate_facts_are_json_serializable() -> None:
    dumped = certificate_facts(pki("RSA_2048").leaf_pem).model_dump(mode="json")
    assert dumped["canonical_serial"].count(":") >= 1
    assert dumped["not_after"].endswith("Z") or dumped["not_after"].endswith("+00:00")


def test_certificate_facts_without_certificate_is_malformed_pem() -> None:
    with pytest.raises(MalformedPem, match="no CERTIFICATE block"):
        certificate_facts(pki("RSA_2048").plain_key_pem())
