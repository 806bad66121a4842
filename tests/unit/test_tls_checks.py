"""domain/tls_checks.py: what a client checks of a served chain, reason by reason, in order
(not-serving-new-serial -> expired -> chain-invalid -> hostname-mismatch), on chains built here:
root -> intermediate -> leaf, RSA and ECDSA."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rollout_core.domain.serials import canonical_serial
from rollout_core.domain.tls_checks import (
    NoTrustAnchor,
    check_served_chain,
    dns_name_matches,
    hostname_problem,
    trust_anchor,
)

from tests.unit.pki_fixtures import NOW, Pki, make_certificate, make_key, pki

NAME = "web.internal.example"


def der(*certs: x509.Certificate) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in certs]


def leaf_of(p: Pki, *, sans: tuple[str, ...], days: int = 30, serial: int | None = None,
            not_before: dt.datetime | None = None, eku: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    """A leaf issued by ``p``'s intermediate with these SANs (and validity, EKU)."""
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0] if sans else "no-san")]))
               .issuer_name(p.intermediate_cert.subject).public_key(p.leaf_key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(minutes=5))
               .not_valid_after((not_before or NOW) + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(p.intermediate_key, p.leaf_cert.signature_hash_algorithm)  # type: ignore[arg-type]


def check(chain: list[x509.Certificate], p: Pki, name: str = NAME, *, serial: int | None = None,
          anchors: list[x509.Certificate] | None = None, now: dt.datetime = NOW):
    return check_served_chain(der(*chain), expected_serial=serial if serial is not None else chain[0].serial_number,
                              anchors=anchors or [p.root_cert], name=name, now=now)


@pytest.mark.parametrize("algorithm", ["RSA_2048", "EC_prime256v1", "EC_secp384r1"])
def test_leaf_and_intermediate_to_the_private_root_pass(algorithm: str) -> None:
    p = pki(algorithm)
    result = check([p.leaf_cert, p.intermediate_cert], p)
    assert (result.reason, result.detail, result.chain_length) == (None, None, 2)
    assert result.passed and result.served_serial == p.leaf_cert.serial_number


def test_the_server_may_send_the_root_too() -> None:
    p = pki()
    assert check([p.leaf_cert, p.intermediate_cert, p.root_cert], p).passed


@pytest.mark.parametrize("algorithm", ["RSA_2048", "EC_prime256v1"])
def test_leaf_only_is_chain_invalid_naming_the_missing_issuer(algorithm: str) -> None:
    p = pki(algorithm)
    result = check([p.leaf_cert], p)
    assert result.reason == "chain-invalid" and result.chain_length == 1
    assert result.detail == (f"the server sent 1 certificate; the issuer 'CN=Example main Issuing CA {algorithm},"
                             "O=Example Corp' of the leaf is neither sent nor a trust anchor")


def test_a_chain_to_another_root_is_chain_invalid() -> None:
    p, other = pki(), pki("RSA_2048", label="other")
    result = check([p.leaf_cert, p.intermediate_cert], p, anchors=[other.root_cert])
    assert result.reason == "chain-invalid"
    assert "issuer" in (result.detail or "") and "neither sent nor a trust anchor" in (result.detail or "")


def test_a_root_of_the_same_name_but_another_key_is_chain_invalid() -> None:
    p = pki()
    impostor_key = make_key("RSA_2048")
    impostor = make_certificate(subject_cn=p.root_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,  # type: ignore[arg-type]
                                public_key=impostor_key.public_key(), issuer_cn="", issuer_key=impostor_key, ca=True,
                                issuer_name=p.root_cert.subject)
    result = check([p.leaf_cert, p.intermediate_cert], p, anchors=[impostor])
    assert result.reason == "chain-invalid" and "does not build to the trust anchor" in (result.detail or "")


def test_serial_mismatch_comes_before_every_chain_problem() -> None:
    p = pki()
    result = check([p.leaf_cert], p, serial=p.leaf_cert.serial_number + 1)
    assert result.reason == "not-serving-new-serial"
    assert canonical_serial(p.leaf_cert.serial_number) in (result.detail or "")


def test_expired_and_not_yet_valid_leaves_are_expired_before_chain_checks() -> None:
    p = pki()
    old = leaf_of(p, sans=(NAME,), not_before=NOW - dt.timedelta(days=40), days=30)
    assert check([old], p).reason == "expired"  # leaf-only too: expiry is named first
    assert "expired at" in (check([old, p.intermediate_cert], p).detail or "")
    future = leaf_of(p, sans=(NAME,), not_before=NOW + dt.timedelta(days=1))
    result = check([future, p.intermediate_cert], p)
    assert result.reason == "expired" and "not valid before" in (result.detail or "")


def test_wildcard_covers_exactly_one_label() -> None:
    p = pki()
    wild = leaf_of(p, sans=("*.svc.example.internal",))
    chain = [wild, p.intermediate_cert]
    assert check(chain, p, "a.svc.example.internal").passed
    assert check(chain, p, "A.SVC.example.internal.").passed  # case and a trailing dot do not matter
    deep = check(chain, p, "a.b.svc.example.internal")
    assert deep.reason == "hostname-mismatch" and "*.svc.example.internal" in (deep.detail or "")
    assert check(chain, p, "svc.example.internal").reason == "hostname-mismatch"  # the apex


def test_wildcard_rules_of_rfc_6125() -> None:
    assert dns_name_matches("*.svc.example.internal", "x.svc.example.internal")
    assert not dns_name_matches("a*.svc.example.internal", "ab.svc.example.internal")  # partial label
    assert not dns_name_matches("a.*.example.internal", "a.b.example.internal")  # not leftmost
    assert not dns_name_matches("*.internal", "example.internal")  # too broad
    assert dns_name_matches("web.internal.example", "WEB.internal.example")
    assert not dns_name_matches("web.internal.example", "web2.internal.example")


def test_the_common_name_is_not_used_when_sans_exist() -> None:
    p = pki()
    leaf = leaf_of(p, sans=("other.internal.example",))  # CN is other.internal.example too
    builder_cn_leaf = leaf_of(p, sans=())
    assert hostname_problem(leaf, NAME) is not None
    assert "no subjectAltName" in (hostname_problem(builder_cn_leaf, "no-san") or "")


def test_an_ip_is_matched_only_against_ip_sans() -> None:
    p = pki()
    ip_leaf = leaf_of(p, sans=(NAME, "10.0.1.15"))
    assert check([ip_leaf, p.intermediate_cert], p, "10.0.1.15").passed
    result = check([ip_leaf, p.intermediate_cert], p, "10.0.1.16")
    assert result.reason == "hostname-mismatch" and "10.0.1.15" in (result.detail or "")
    dns_only = leaf_of(p, sans=("10.0.1.15.nip.example",))
    assert check([dns_only, p.intermediate_cert], p, "10.0.1.15").reason == "hostname-mismatch"


def test_a_wrong_name_on_a_broken_chain_is_chain_invalid_first() -> None:
    p = pki()
    assert check([p.leaf_cert], p, "elsewhere.example").reason == "chain-invalid"


def test_a_leaf_only_for_client_authentication_is_chain_invalid() -> None:
    p = pki()
    client_only = leaf_of(p, sans=(NAME,), eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    result = check([client_only, p.intermediate_cert], p)
    assert result.reason == "chain-invalid" and "server authentication" in (result.detail or "")
    both = leaf_of(p, sans=(NAME,), eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    assert check([both, p.intermediate_cert], p).passed
    server_only = leaf_of(p, sans=(NAME,), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert check([server_only, p.intermediate_cert], p).passed


def test_an_intermediate_that_is_not_a_ca_is_chain_invalid() -> None:
    p = pki()
    int_key = make_key("RSA_2048")
    not_ca = make_certificate(subject_cn="Example main Issuing CA RSA_2048", public_key=int_key.public_key(),
                              issuer_cn="Example main Root CA RSA_2048", issuer_key=p.root_key, ca=False)
    leaf = make_certificate(subject_cn=NAME, public_key=p.leaf_key.public_key(), issuer_cn="", issuer_key=int_key,
                            ca=False, sans=(NAME,), issuer_name=not_ca.subject)
    result = check([leaf, not_ca], p)
    assert result.reason == "chain-invalid" and "does not build to the trust anchor" in (result.detail or "")


def test_trust_anchor_is_the_self_signed_root_at_the_end_of_the_chain() -> None:
    p = pki()
    assert trust_anchor([p.intermediate_cert, p.root_cert]) == p.root_cert
    with pytest.raises(NoTrustAnchor, match="not a self-signed CA certificate"):
        trust_anchor([p.intermediate_cert])
    with pytest.raises(NoTrustAnchor, match="empty"):
        trust_anchor([])
    with pytest.raises(NoTrustAnchor, match="not a self-signed CA certificate"):
        trust_anchor([p.leaf_cert])


def test_an_empty_chain_or_no_anchor_is_refused() -> None:
    p = pki()
    with pytest.raises(ValueError, match="empty"):
        check_served_chain([], expected_serial=1, anchors=[p.root_cert], name=NAME, now=NOW)
    with pytest.raises(ValueError, match="no trust anchor"):
        check_served_chain(der(p.leaf_cert), expected_serial=1, anchors=[], name=NAME, now=NOW)
