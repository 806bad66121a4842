"""PEM text, certificate bundles and certificate facts (K5).

A bundle is what a TLS server is given: the leaf first, then each issuer in order
(RFC 8446 section 4.4.2: "The sender's certificate MUST come in the first
CertificateEntry in the list. Each following certificate SHOULD directly certify the
one immediately preceding it"; RFC 5246 section 7.4.2 says MUST for TLS 1.2). ACM's
ExportCertificate returns ``Certificate`` (the leaf) and ``CertificateChain`` (the
issuing CA's chain, ending with the private CA's root for AWS Private CA).

PEM syntax: RFC 7468 (textual encodings; base64 lines of 64 characters for the strict
form, section 3). All output here is normalized: LF line endings, base64 wrapped at
64 columns, exactly one newline between blocks, a final newline, nothing between blocks.
Exception messages name a block by position and label, never by content.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict

from .errors import InvalidBundle, MalformedPem
from .keys import key_algorithm_name, key_matches_certificate, public_key_fingerprint
from .serials import canonical_serial

__all__ = [
    "split_pem_blocks",
    "normalize_pem",
    "Bundle",
    "build_bundle",
    "CertificateFacts",
    "certificate_facts",
]

_BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9][A-Z0-9 ]*)-----$")
_END = re.compile(r"^-----END ([A-Z0-9][A-Z0-9 ]*)-----$")
_B64_LINE = re.compile(r"[A-Za-z0-9+/=]+")
_HEADER = re.compile(r"^[A-Za-z0-9-]+:\s?.*$")  # RFC 1421 headers (Proc-Type, DEK-Info)


def _to_text(text: str | bytes) -> str:
    if isinstance(text, (bytes, bytearray)):
        try:
            return bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise MalformedPem("PEM text is not ASCII") from None
    if not isinstance(text, str):
        raise MalformedPem(f"PEM text must be str or bytes, got {type(text).__name__}")
    return text


def _wrap64(data: str) -> list[str]:
    return [data[i : i + 64] for i in range(0, len(data), 64)]


def split_pem_blocks(text: str | bytes) -> list[tuple[str, str]]:
    """Split PEM text into ``[(label, normalized_block), ...]`` in input order.

    Each normalized block is ``"-----BEGIN L-----\\n<base64 wrapped at 64>\\n-----END L-----\\n"``
    (LF only; RFC 1421 encapsulated headers such as ``Proc-Type`` kept, then one blank
    line). Text outside blocks (``Bag Attributes``, ``subject=`` lines, blank lines, CR)
    is dropped. Leading/trailing whitespace on a line is tolerated.

    Returns ``[]`` for text without any BEGIN line. Raises :class:`MalformedPem` for a
    BEGIN without END, an END label differing from the BEGIN label, a nested BEGIN, an
    END without BEGIN, invalid base64 or an empty block; the message names the block's
    position and label only. Source: RFC 7468 sections 2-3.
    """
    lines = _to_text(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[tuple[str, str]] = []
    label: str | None = None
    headers: list[str] = []
    body: list[str] = []
    for raw_line in lines:
        line = raw_line.strip()
        begin = _BEGIN.match(line)
        end = _END.match(line)
        if label is None:
            if begin:
                label, headers, body = begin.group(1), [], []
            elif end:
                raise MalformedPem(f"block {len(blocks)}: END {end.group(1)!r} without a BEGIN line")
            continue
        position = len(blocks)
        if begin:
            raise MalformedPem(f"block {position} ({label}): BEGIN {begin.group(1)!r} before its END line")
        if end:
            blocks.append((label, _closed_block(position, label, end.group(1), headers, body)))
            label = None
            continue
        _add_block_line(position, label, line, headers, body)
    if label is not None:
        raise MalformedPem(f"block {len(blocks)} ({label}): BEGIN line without an END line")
    return blocks


def _add_block_line(position: int, label: str, line: str, headers: list[str], body: list[str]) -> None:
    """Add one stripped ``line`` inside block ``position`` (``label``) to its RFC 1421
    ``headers`` (only before the first base64 line) or its base64 ``body``; a blank line is
    skipped. Raises :class:`MalformedPem` for a line that is neither (names position and label)."""
    if not line:
        return
    if not body and _HEADER.match(line) and not _B64_LINE.fullmatch(line):
        headers.append(line)
        return
    if not _B64_LINE.fullmatch(line):
        raise MalformedPem(f"block {position} ({label}) has a line that is not base64")
    body.append(line)


def _closed_block(position: int, label: str, end_label: str, headers: list[str], body: list[str]) -> str:
    """The normalized text of block ``position`` (``label``), closed by an END ``end_label``
    line: BEGIN line, ``headers`` and a blank line when there are any, the ``body``'s base64
    re-encoded and wrapped at 64 columns, END line, final LF (RFC 7468 section 3).

    Raises :class:`MalformedPem` when the END label differs, the body is empty or is not
    strict base64; the message names position and label only."""
    if end_label != label:
        raise MalformedPem(f"block {position}: BEGIN {label!r} closed by END {end_label!r}")
    data = "".join(body)
    if not data:
        raise MalformedPem(f"block {position} ({label}) is empty")
    try:
        decoded = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MalformedPem(f"block {position} ({label}) is not valid base64") from None
    encoded = binascii.b2a_base64(decoded, newline=False).decode("ascii")
    parts = [f"-----BEGIN {label}-----"]
    if headers:
        parts.extend(headers)
        parts.append("")
    parts.extend(_wrap64(encoded))
    parts.append(f"-----END {label}-----")
    return "\n".join(parts) + "\n"


def normalize_pem(text: str | bytes) -> str:
    """Return the normalized form of PEM text (see module docstring).

    ``"junk\\r\\n-----BEGIN CERTIFICATE-----\\r\\nAAAA\\r\\n-----END CERTIFICATE-----\\r\\n\\r\\n"``
    -> ``"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n"``. Blocks keep
    their order and label. Raises :class:`MalformedPem` as :func:`split_pem_blocks`, and
    when the text holds no PEM block. Source: RFC 7468.
    """
    blocks = split_pem_blocks(text)
    if not blocks:
        raise MalformedPem("no PEM block found")
    return "".join(block for _, block in blocks)


def _cn(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "replace")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        return bool(constraints.ca)
    except x509.ExtensionNotFound:
        return False


def _describe(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string() or "<empty subject>")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """None when ``issuer`` directly issued and signed ``cert``; else the reason."""
    try:
        cert.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return "its signature does not verify with the next certificate's public key"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"its signature cannot be checked with the next certificate ({type(exc).__name__}: {exc})"
    return None


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert) is None


class Bundle(BaseModel):
    """A checked certificate bundle: the leaf, then the chain in issuer order (K5).

    Only certificates (public data); the private key is never part of a bundle, so a
    bundle may be logged or returned. Every PEM string is normalized and ends with LF.
    Build it with :func:`build_bundle`, which enforces the order and signatures.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    leaf_pem: str
    chain_pems: list[str]

    @property
    def chain_pem(self) -> str:
        """Intermediates (then root, when present) concatenated; ``""`` when there is no chain."""
        return "".join(self.chain_pems)

    @property
    def fullchain_pem(self) -> str:
        """Leaf followed by the chain, normalized (nginx ``ssl_certificate``, HAProxy crt)."""
        return self.leaf_pem + self.chain_pem

    @property
    def leaf_serial(self) -> int:
        """The leaf certificate's serial number as an int."""
        return x509.load_pem_x509_certificate(self.leaf_pem.encode("ascii")).serial_number


def _certificates(text: str | bytes | None, what: str, offset: int) -> list[tuple[x509.Certificate, str]]:
    if text is None:
        return []
    try:
        blocks = split_pem_blocks(text)
    except MalformedPem as exc:
        raise InvalidBundle(f"{what}: {exc.message}") from None
    out: list[tuple[x509.Certificate, str]] = []
    for index, (label, block) in enumerate(blocks):
        if label != "CERTIFICATE":
            raise InvalidBundle(
                f"{what}: block {index} is a {label!r} block; only CERTIFICATE blocks may be in a bundle"
            )
        try:
            cert = x509.load_pem_x509_certificate(block.encode("ascii"))
        except ValueError:
            raise InvalidBundle(
                f"{what}: certificate at bundle position {offset + len(out)} cannot be parsed as X.509"
            ) from None
        out.append((cert, block))
    return out


def build_bundle(
    certificate_pem: str | bytes,
    chain_pem: str | bytes | None,
    private_key: PrivateKeyTypes | None = None,
    *,
    require_root: bool = True,
) -> Bundle:
    """Check and normalize a leaf + chain into a :class:`Bundle` (K5).

    Inputs: ``certificate_pem`` is ACM's ``Certificate`` (exactly one CERTIFICATE block,
    the leaf); ``chain_pem`` is ACM's ``CertificateChain`` (zero or more CERTIFICATE
    blocks, issuer order) or None/"" for no chain; ``private_key`` (optional,
    ``cryptography`` key) must belong to the leaf.

    Checks, in order, each failure raising :class:`InvalidBundle` naming the position
    (0 = leaf) and subject:

    * only CERTIFICATE blocks, each valid PEM and X.509; exactly one in ``certificate_pem``;
    * the leaf is not a CA certificate when a chain is given (chain-first bundles);
    * every certificate after position 0 is a CA (basicConstraints cA=TRUE);
    * certificate *i* names certificate *i+1* as issuer and its signature verifies with
      *i+1*'s key (``Certificate.verify_directly_issued_by``); an issuer found at another
      position is reported as "wrong order", one absent as "missing issuer";
    * the last certificate is self-signed (the root), unless ``require_root=False``;
      otherwise "chain ends in a missing issuer: ...";
    * ``private_key``, when given, matches the leaf's public key (SPKI comparison).

    ACM's exported chain for AWS Private CA normally ends with the root, hence the
    default ``require_root=True``; pass False for chains that deliberately stop at an
    intermediate. Sources: RFC 8446 section 4.4.2, RFC 5280 sections 4.1.2.4, 4.2.1.9, 6.1.
    """
    leaf_items = _certificates(certificate_pem, "certificate", 0)
    if len(leaf_items) != 1:
        raise InvalidBundle(
            f"certificate: expected exactly one CERTIFICATE block (the leaf), found {len(leaf_items)}"
        )
    chain_items = _certificates(chain_pem or None, "chain", 1)
    items = leaf_items + chain_items
    certs = [cert for cert, _ in items]

    if len(certs) > 1 and _is_ca(certs[0]):
        raise InvalidBundle(
            f"position 0 (subject {_describe(certs[0])}) is a CA certificate: the leaf must come first "
            "(bundle built chain-first?)"
        )
    for position, cert in enumerate(certs[1:], start=1):
        if not _is_ca(cert):
            raise InvalidBundle(
                f"position {position} (subject {_describe(cert)}) is not a CA certificate: only the leaf "
                "may be an end-entity certificate, and it must be first"
            )

    for position in range(len(certs) - 1):
        cert, nxt = certs[position], certs[position + 1]
        if cert.issuer != nxt.subject:
            elsewhere = [j for j, other in enumerate(certs) if j != position and other.subject == cert.issuer]
            if elsewhere:
                found = elsewhere[0]
                raise InvalidBundle(
                    f"wrong order: position {position} (subject {_describe(cert)}) was issued by position "
                    f"{found} (subject {_describe(certs[found])}), but position {position + 1} is "
                    f"{_describe(nxt)}; each certificate must be followed by its issuer"
                )
            raise InvalidBundle(
                f"missing issuer: position {position} (subject {_describe(cert)}) was issued by "
                f"{cert.issuer.rfc4514_string()!r}, which is not in the bundle (position {position + 1} is "
                f"{_describe(nxt)})"
            )
        reason = _signed_by(cert, nxt)
        if reason is not None:
            raise InvalidBundle(f"position {position} (subject {_describe(cert)}): {reason}")

    last = len(certs) - 1
    if require_root and not _self_signed(certs[last]):
        raise InvalidBundle(
            f"chain ends in a missing issuer: position {last} (subject {_describe(certs[last])}) was issued "
            f"by {certs[last].issuer.rfc4514_string()!r}, which is not in the bundle"
        )

    if private_key is not None and not key_matches_certificate(private_key, certs[0]):
        raise InvalidBundle(
            f"position 0 (subject {_describe(certs[0])}) does not match the private key: certificate key "
            f"spki-sha256 {public_key_fingerprint(certs[0])}, private key spki-sha256 "
            f"{public_key_fingerprint(private_key)}"
        )

    return Bundle(leaf_pem=items[0][1], chain_pems=[block for _, block in items[1:]])


class CertificateFacts(BaseModel):
    """Public facts of one certificate, for reports, inventory and verification.

    ``serial`` is the int; ``canonical_serial`` ACM's display form (``"08:04:e5:..."``);
    put the string, not the int, into JSON state (JSON consumers may lose precision on
    large integers). Datetimes are timezone-aware UTC.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    serial: int
    canonical_serial: str
    subject: str
    subject_cn: str | None
    sans: list[str]
    issuer: str
    issuer_cn: str | None
    not_before: datetime
    not_after: datetime
    key_algorithm: str
    is_ca: bool
    self_signed: bool
    sha256_fingerprint: str
    spki_sha256: str


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for name in names:
        value: Any = name.value
        if isinstance(name, (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier, x509.IPAddress)):
            out.append(str(value))
        elif isinstance(name, x509.DirectoryName):
            out.append(value.rfc4514_string())
        elif isinstance(name, x509.RegisteredID):
            out.append(value.dotted_string)
    return out


def certificate_facts(pem: str | bytes | x509.Certificate) -> CertificateFacts:
    """Extract :class:`CertificateFacts` from a PEM certificate (the first CERTIFICATE block).

    Shapes: ``sans`` lists DNS names, IP addresses (``str(ip)``), URIs and emails in
    certificate order; ``key_algorithm`` uses ACM's KeyAlgorithm names (``RSA_2048``,
    ``EC_prime256v1``, ``EC_secp384r1``...); ``not_before``/``not_after`` are aware UTC
    datetimes; fingerprints are lowercase hex SHA-256 (of the DER certificate / its SPKI).
    Raises :class:`MalformedPem` when there is no CERTIFICATE block or it is not X.509,
    :class:`InvalidSerial` for a negative or over-long serial.
    Sources: RFC 5280 sections 4.1.2.2, 4.1.2.5, 4.2.1.6; ACM API Reference, KeyAlgorithm.
    """
    if isinstance(pem, x509.Certificate):
        cert = pem
    else:
        blocks = [block for label, block in split_pem_blocks(pem) if label == "CERTIFICATE"]
        if not blocks:
            raise MalformedPem("no CERTIFICATE block found")
        try:
            cert = x509.load_pem_x509_certificate(blocks[0].encode("ascii"))
        except ValueError:
            raise MalformedPem("the CERTIFICATE block cannot be parsed as X.509") from None
    return CertificateFacts(
        serial=cert.serial_number,
        canonical_serial=canonical_serial(cert.serial_number),
        subject=cert.subject.rfc4514_string(),
        subject_cn=_cn(cert.subject),
        sans=_sans(cert),
        issuer=cert.issuer.rfc4514_string(),
        issuer_cn=_cn(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_algorithm=key_algorithm_name(cert.public_key()),
        is_ca=_is_ca(cert),
        self_signed=_self_signed(cert),
        sha256_fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        spki_sha256=public_key_fingerprint(cert),
    )
