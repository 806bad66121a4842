"""What a TLS client checks about a served chain, in the order VerifyTarget reports it.

Input: the chain the server sent (DER bytes, leaf first, as sent: RFC 8446 section 4.4.2,
RFC 5246 section 7.4.2), the serial the rollout installs (int), the trust anchors (the root
certificate(s) of the certificate's issuing CA: never the server's own chain), the name a
client connects by and ``now``. Output: one :class:`TlsCheck` with a named ``reason`` (None
when every check passed), checked in this order so that each reason names the first problem:

1. ``not-serving-new-serial``  the leaf's serial is not the expected one (integers, RFC 5280
                               section 4.1.2.2): the server still serves the old files.
2. ``expired``                 ``now`` is before notBefore or after notAfter of the leaf
                               (RFC 5280 section 4.1.2.5).
3. ``chain-invalid``           the sent chain does not build to a trust anchor (RFC 5280
                               section 6.1: signatures, validity of every certificate, basic
                               constraints, key usage, path length), with what is missing.
4. ``hostname-mismatch``       the name is not one the leaf was issued for (RFC 6125, see
                               :func:`hostname_problem`).

The chain is built by ``cryptography.x509.verification`` (its RFC 5280 / CA/B Forum path
builder), through its name-less verifier with the extension policies below (the leaf's
extendedKeyUsage checked for serverAuth here), so that a wrong name never shows up as a chain
problem; the name is matched by :func:`hostname_problem`. Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from rollout_core.domain.errors import RolloutError
from rollout_core.domain.serials import canonical_serial

CheckReason = Literal["not-serving-new-serial", "expired", "chain-invalid", "hostname-mismatch"]
CHECK_REASONS: tuple[CheckReason, ...] = ("not-serving-new-serial", "expired", "chain-invalid", "hostname-mismatch")
# Reasons that waiting cannot fix once the new serial is served (VerifyTarget ends at once).
FINAL_REASONS: frozenset[str] = frozenset({"expired", "chain-invalid", "hostname-mismatch"})


class NoTrustAnchor(RolloutError):
    """The certificate's chain does not end in a self-signed CA certificate (the root of its
    issuing CA), so there is nothing to verify served chains against."""


@dataclass(frozen=True)
class TlsCheck:
    """The result of :func:`check_served_chain`.

    reason: the first failed check (module docstring order) or None; detail: one line saying
    what failed (None when passed); served_serial: the leaf's serial (int); chain_length: the
    number of certificates the server sent (leaf included).
    """

    reason: CheckReason | None
    detail: str | None
    served_serial: int
    chain_length: int

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return self.reason is None


def _name_text(name: x509.Name) -> str:
    return name.rfc4514_string() or "<empty name>"


def _is_self_signed_ca(cert: x509.Certificate) -> bool:
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
    if not ca or cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature or unsupported key: not a root
        return False
    return True


def trust_anchor(chain: Sequence[x509.Certificate]) -> x509.Certificate:
    """The root of a certificate's issuing CA: the last certificate of its chain (ACM's
    ExportCertificate ``CertificateChain``, issuer order, RFC 5280 section 6.1 trust anchor).

    Raises NoTrustAnchor when the chain is empty or its last certificate is not a
    self-signed CA certificate (basicConstraints cA=TRUE, issuer == subject, its own signature
    verifies)."""
    if not chain:
        raise NoTrustAnchor("the certificate chain is empty: no root certificate to verify served chains against")
    last = chain[-1]
    if not _is_self_signed_ca(last):
        raise NoTrustAnchor(f"the last certificate of the chain ({_name_text(last.subject)!r}, issued by "
                            f"{_name_text(last.issuer)!r}) is not a self-signed CA certificate: no root to "
                            "verify served chains against")
    return last


# --------------------------------------------------------------------------- host names


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _labels(name: str) -> list[str]:
    return name.lower().removesuffix(".").split(".")


def dns_name_matches(pattern: str, name: str) -> bool:
    """Does the DNS-ID ``pattern`` of a certificate cover the host name ``name``?

    RFC 6125 section 6.4.1: labels compared case-insensitively (ASCII; A-labels as they are);
    section 6.4.3 as the CA/B Forum Baseline Requirements and browsers narrow it: a wildcard
    is allowed only as the whole leftmost label (``*.svc.example.internal``; not ``a*.svc``,
    not in another label) and covers exactly one label: ``a.svc.example.internal``, never
    ``a.b.svc.example.internal`` nor the apex ``svc.example.internal``. A pattern needs at
    least two labels after the wildcard (``*.internal`` covers nothing)."""
    want, have = _labels(name), _labels(pattern)
    if not all(want) or not all(have):
        return False
    if "*" not in pattern:
        return want == have
    if have[0] != "*" or any("*" in label for label in have[1:]) or len(have) < 3:
        return False
    return len(want) == len(have) and want[1:] == have[1:]


def hostname_problem(cert: x509.Certificate, name: str) -> str | None:
    """None when ``cert`` was issued for ``name``, else why not (one line).

    RFC 6125 section 6.4 (DNS-ID in subjectAltName dNSName, wildcard per :func:`dns_name_matches`)
    and section 6.4.4: the subject CN is never consulted when the certificate has any
    subjectAltName, and a certificate without one matches nothing here (CA/B Forum BR
    7.1.2.7.12: SAN required; RFC 6125 section 6.4.4 leaves CN-ID to legacy clients). An IP
    address ``name`` is matched only against iPAddress SANs (RFC 6125 section 1.7.2, RFC 5280
    section 4.2.1.6), never against a DNS name."""
    san = _san(cert)
    if san is None:
        return f"the certificate has no subjectAltName, so it names no host ({name!r} included; the CN is not used)"
    dns = [str(d) for d in san.get_values_for_type(x509.DNSName)]
    ips = san.get_values_for_type(x509.IPAddress)
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        if any(ip == address for ip in ips):
            return None
        shown = ", ".join(str(ip) for ip in ips) or "none"
        return f"{name} is an IP address and the certificate's IP address SANs are: {shown}"
    if any(dns_name_matches(pattern, name) for pattern in dns):
        return None
    return (f"{name!r} is not covered by the certificate's DNS SANs {', '.join(dns) or '(none)'} "
            "(a wildcard covers exactly one leftmost label, RFC 6125 section 6.4.3)")


# --------------------------------------------------------------------------- the chain


def _missing_issuer(sent: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> str | None:
    """Walk from the leaf by issuer name through the sent certificates; the first certificate
    whose issuer is neither sent nor a trust anchor, as detail text (None when the names chain)."""
    anchor_names = {a.subject for a in anchors}
    by_subject = {c.subject: c for c in sent[1:]}
    cert, seen = sent[0], 0
    while seen <= len(sent):
        if cert.issuer in anchor_names:
            return None
        nxt = by_subject.get(cert.issuer)
        if nxt is None or nxt is cert:
            what = "the leaf" if cert is sent[0] else f"the sent certificate {_name_text(cert.subject)!r}"
            count = f"{len(sent)} certificate{'s' if len(sent) != 1 else ''}"
            return (f"the server sent {count}; the issuer {_name_text(cert.issuer)!r} of {what} is neither "
                    "sent nor a trust anchor")
        cert, seen = nxt, seen + 1
    return None


def _ee_policy() -> ExtensionPolicy:
    """The leaf's extension policy: the Web PKI defaults without their SAN rules (the name is
    :func:`hostname_problem`'s business, reported as hostname-mismatch) and without the
    authorityKeyIdentifier requirement (RFC 5280 4.2.1.1 asks CAs for it; TLS clients such as
    OpenSSL do not refuse a leaf without it). extendedKeyUsage, when present, must allow
    serverAuth (RFC 5280 4.2.1.12), as clients check: this replaces the name-less (client)
    verifier's own clientAuth rule."""

    def eku(_policy: object, _cert: x509.Certificate, ext: x509.ExtendedKeyUsage | None) -> None:
        if ext is not None and ExtendedKeyUsageOID.SERVER_AUTH not in ext and \
                ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in ext:
            raise ValueError("the leaf's extendedKeyUsage does not allow TLS server authentication")

    return (ExtensionPolicy.webpki_defaults_ee()
            .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
            .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku))


def _ca_policy() -> ExtensionPolicy:
    """The CAs' extension policy: the Web PKI defaults (basicConstraints cA, keyUsage
    keyCertSign, path length: RFC 5280 4.2.1.3, 4.2.1.9) without the authorityKeyIdentifier and
    subjectKeyIdentifier requirements (not checked by TLS clients; private CAs differ)."""
    return (ExtensionPolicy.webpki_defaults_ca()
            .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
            .may_be_present(x509.SubjectKeyIdentifier, Criticality.AGNOSTIC, None))


def chain_problem(sent: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                  now: datetime) -> str | None:
    """None when the sent chain (leaf first) builds to one of ``anchors`` at ``now``, else what
    is wrong (one line): a missing issuer is named (:func:`_missing_issuer`), other failures
    carry the path builder's message. RFC 5280 section 6.1; the anchors are trusted as given
    (RFC 5280 section 6.1.1 (d)), the server's own copy of a root is ignored."""
    missing = _missing_issuer(sent, anchors)
    if missing is not None:
        return missing
    verifier = (PolicyBuilder().store(Store(list(anchors))).time(now)
                .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy())
                .build_client_verifier())
    try:
        verifier.verify(sent[0], list(sent[1:]))
    except VerificationError as e:
        return f"the chain the server sent ({len(sent)} certificates) does not build to the trust anchor: {e}"
    return None


def check_served_chain(chain: Sequence[bytes], *, expected_serial: int, anchors: Sequence[x509.Certificate],
                       name: str, now: datetime) -> TlsCheck:
    """The checks of the module docstring, in its order, on one served chain.

    ``chain``: DER certificates as the server sent them, leaf first (at least one);
    ``expected_serial``: int; ``anchors``: the issuing CA's root certificate(s) (at least one);
    ``name``: the target's SNI name, or its host when that is an IP and no SNI is set;
    ``now``: timezone-aware datetime. Raises ValueError for an empty chain or no anchor, or a
    sent certificate that is not DER X.509 (the probe reports that as CertificateParseError)."""
    if not chain:
        raise ValueError("the served chain is empty: a TLS server sends at least its leaf (RFC 8446 section 4.4.2)")
    if not anchors:
        raise ValueError("no trust anchor: pass the root certificate of the certificate's issuing CA")
    sent = [x509.load_der_x509_certificate(der) for der in chain]
    leaf = sent[0]
    served = leaf.serial_number

    def result(reason: CheckReason | None, detail: str | None) -> TlsCheck:
        return TlsCheck(reason=reason, detail=detail, served_serial=served, chain_length=len(sent))

    if served != expected_serial:
        return result("not-serving-new-serial", f"expected serial {canonical_serial(expected_serial)}, served {canonical_serial(served)}")
    if now < leaf.not_valid_before_utc:
        return result("expired", f"the leaf is not valid before {leaf.not_valid_before_utc.isoformat()} "
                                 f"(now {now.isoformat()})")
    if now > leaf.not_valid_after_utc:
        return result("expired", f"the leaf expired at {leaf.not_valid_after_utc.isoformat()} (now {now.isoformat()})")
    problem = chain_problem(sent, anchors, now)
    if problem is not None:
        return result("chain-invalid", problem)
    mismatch = hostname_problem(leaf, name)
    if mismatch is not None:
        return result("hostname-mismatch", mismatch)
    return result(None, None)
