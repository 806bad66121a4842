"""TLS probe: which certificate does a target really serve?

Writing files is never success (case S2): success is a TLS handshake to the target's
configured ``host:port``, with the configured SNI name, that presents the new serial.
This module does that handshake and reports the served leaf certificate and the chain the
server sent (``ServedCertificate.chain_der``, :func:`served_chain`), which
rollout_core.domain.tls_checks checks the way a client does (logic/observe.py).

Shapes and units
----------------
* ``host``: DNS name or IP literal to connect to (TCP). ``port``: TCP port (int).
* ``sni``: the name sent in the TLS ``server_name`` extension (RFC 6066 section 3).
  ``None`` or ``""`` sends no SNI, so the server answers with its default site.
  RFC 6066 does not allow IP literals in SNI; Python then sends none either.
* ``timeout``: seconds (float), one deadline for connect + handshake of one probe.
* Serials are integers (RFC 5280 section 4.1.2.2: a positive INTEGER of at most 20
  octets). ``serial_hex`` is the lowercase colon form ACM shows (``0f:ac:01``): two
  hex digits per byte, as few bytes as the value needs (no DER sign byte ``00``).

Errors (all subclass :class:`ProbeError`)
-----------------------------------------
* :class:`TargetUnreachable`: no TLS conversation took place: DNS failure, connection
  refused, connect timeout, no route, connection reset before the handshake finished.
  ``reason`` is one of ``dns``, ``refused``, ``timeout``, ``reset``, ``unreachable``.
* :class:`TlsHandshakeFailed`: TCP connected, but the TLS handshake failed (alert,
  not TLS on that port, server closed during the handshake, handshake timeout, no
  certificate).
* :class:`CertificateParseError`: the server sent a certificate that cannot be parsed.

Case S4: "could not connect" (these exceptions) and "serial mismatch"
(:func:`verify_served_serial` returning ``matches=False``) are different outcomes.

Verification is off for the serial read (``CERT_NONE``, case S3): the point is to see
what is served, even when it is self-signed, expired or for the wrong name. When a CA
bundle is given, a second handshake with that CA reports ``verified`` (chain and, if
``sni`` is set, hostname per RFC 6125) without changing the serial read.

Dependencies: standard library + ``cryptography`` (ships in the Lambda layer).
"""

from __future__ import annotations

import _ssl
import hashlib
import ipaddress
import socket
import ssl
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateParseError",
    "ProbeError",
    "ServedCertificate",
    "TargetUnreachable",
    "TlsHandshakeFailed",
    "VerificationResult",
    "chain_names",
    "format_serial_hex",
    "parse_served_certificate",
    "probe_served_certificate",
    "served_chain",
    "verify_served_serial",
]


# --------------------------------------------------------------------------- errors


class ProbeError(Exception):
    """Base of every probe error. ``host``, ``port``, ``sni`` and ``cause`` are set
    when known; the message always names ``host:port`` and the cause."""

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        port: int | None = None,
        sni: str | None = None,
        cause: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.sni = sni
        self.cause = cause
        self.reason = reason


class TargetUnreachable(ProbeError):
    """No TLS conversation happened: DNS failure, refused, timed out, no route, or
    reset before the handshake completed. ``reason``: dns|refused|timeout|reset|unreachable."""


class TlsHandshakeFailed(ProbeError):
    """TCP connected but the TLS handshake failed (alert, protocol error, not TLS,
    closed by the server, handshake timeout, no certificate presented)."""


class CertificateParseError(ProbeError):
    """The served certificate (DER) could not be parsed as X.509 (RFC 5280)."""


# --------------------------------------------------------------------------- results


def format_serial_hex(serial: int) -> str:
    """RFC 5280 serial (int) -> lowercase colon hex, two digits per byte, minimal
    number of bytes (``0`` -> ``"00"``, ``0x0fac01`` -> ``"0f:ac:01"``). A negative
    serial (not RFC 5280 conformant, but seen in the wild) gets a leading ``-``."""
    if not isinstance(serial, int) or isinstance(serial, bool):
        raise TypeError(f"serial must be an int, got {type(serial).__name__}")
    sign = "-" if serial < 0 else ""
    value = abs(serial)
    length = max(1, (value.bit_length() + 7) // 8)
    return sign + ":".join(f"{b:02x}" for b in value.to_bytes(length, "big"))


@dataclass(frozen=True)
class ServedCertificate:
    """The leaf certificate a target presented in one handshake.

    serial: int (RFC 5280 4.1.2.2); serial_hex: lowercase colon hex, minimal bytes;
    subject / issuer: RFC 4514 strings; common_name: first CN of the subject or None;
    sans: DNS names and IP addresses (as text) of the subjectAltName extension;
    not_before / not_after: timezone-aware UTC datetimes; fingerprint_sha256:
    lowercase hex of SHA-256 over the DER leaf (no colons); chain_der: the certificates
    the server sent, DER, leaf first, in the order sent (public data: no key material), empty
    when the chain could not be read, and then chain_error says why; chain_length: their
    number (leaf included), None when the chain could not be read; verified: result of a second,
    verifying handshake when a CA bundle was given, else None (verify_error then
    says why it failed); tls_version: e.g. ``"TLSv1.3"``; host/port/sni: what was probed.
    """

    serial: int
    serial_hex: str
    subject: str
    common_name: str | None
    sans: list[str] = field(hash=False)
    issuer: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    chain_length: int | None
    verified: bool | None
    tls_version: str | None
    host: str | None = None
    port: int | None = None
    sni: str | None = None
    verify_error: str | None = None
    chain_der: tuple[bytes, ...] = field(default=(), hash=False, repr=False)
    chain_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 strings). Holds no key material; the chain
        appears as its length and each certificate's subject and issuer (RFC 4514), not as DER."""
        data = asdict(self)
        data.pop("chain_der")
        data["not_before"] = self.not_before.isoformat()
        data["not_after"] = self.not_after.isoformat()
        data["chain"] = chain_names(self.chain_der)
        return data


def chain_names(chain_der: tuple[bytes, ...]) -> list[dict[str, str]]:
    """[{"subject", "issuer"}] (RFC 4514 strings) of each DER certificate, in the order given;
    an unparseable one shows as ``{"subject": "<unparseable>", "issuer": "<unparseable>"}``."""
    names: list[dict[str, str]] = []
    for der in chain_der:
        try:
            cert = x509.load_der_x509_certificate(der)
            names.append({"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string()})
        except ValueError:
            names.append({"subject": "<unparseable>", "issuer": "<unparseable>"})
    return names


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verify_served_serial`: ``matches`` is True when the served
    leaf's serial equals ``expected_serial`` (integers, RFC 5280)."""

    matches: bool
    expected_serial: int
    served_serial: int
    served: ServedCertificate

    @property
    def expected_serial_hex(self) -> str:
        return format_serial_hex(self.expected_serial)

    @property
    def served_serial_hex(self) -> str:
        return format_serial_hex(self.served_serial)

    def to_dict(self) -> dict[str, Any]:
        return {
            "matches": self.matches,
            "expected_serial": self.expected_serial_hex,
            "served_serial": self.served_serial_hex,
            "served": self.served.to_dict(),
        }


# --------------------------------------------------------------------------- parsing


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(ext.value.get_values_for_type(x509.DNSName))
    names.extend(str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress))
    return names


def parse_served_certificate(
    der: bytes,
    *,
    chain_length: int | None = None,
    verified: bool | None = None,
    tls_version: str | None = None,
    host: str | None = None,
    port: int | None = None,
    sni: str | None = None,
    verify_error: str | None = None,
    chain_der: tuple[bytes, ...] = (),
    chain_error: str | None = None,
) -> ServedCertificate:
    """DER leaf (bytes) -> :class:`ServedCertificate`; ``chain_der`` the sent chain (DER, leaf
    first) or () with ``chain_error`` saying why it could not be read. Raises CertificateParseError."""
    try:
        cert = x509.load_der_x509_certificate(der)
        serial = cert.serial_number
        subject = cert.subject.rfc4514_string()
        issuer = cert.issuer.rfc4514_string()
        common_name = _common_name(cert.subject)
        sans = _sans(cert)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
    except (ValueError, TypeError) as exc:
        raise CertificateParseError(
            f"{host}:{port}: served certificate cannot be parsed: {exc}",
            host=host,
            port=port,
            sni=sni,
            cause=str(exc),
        ) from exc
    return ServedCertificate(
        serial=serial,
        serial_hex=format_serial_hex(serial),
        subject=subject,
        common_name=common_name,
        sans=sans,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        chain_length=chain_length,
        verified=verified,
        tls_version=tls_version,
        host=host,
        port=port,
        sni=sni,
        verify_error=verify_error,
        chain_der=chain_der,
        chain_error=chain_error,
    )


# --------------------------------------------------------------------------- probing


def _sni_value(sni: str | None) -> str | None:
    if sni is None or sni == "":
        return None
    try:
        ipaddress.ip_address(sni)
    except ValueError:
        return sni
    return None  # RFC 6066 section 3: literal IPv4/IPv6 addresses are not permitted


def _connect(host: str, port: int, sni: str | None, deadline: float) -> socket.socket:
    where = f"{host}:{port}"
    remaining = max(0.001, deadline - time.monotonic())
    try:
        return socket.create_connection((host, port), timeout=remaining)
    except socket.gaierror as exc:
        raise TargetUnreachable(
            f"{where}: could not connect: DNS lookup failed: {exc}",
            host=host, port=port, sni=sni, cause=str(exc), reason="dns",
        ) from exc
    except ConnectionRefusedError as exc:
        raise TargetUnreachable(
            f"{where}: could not connect: connection refused",
            host=host, port=port, sni=sni, cause=str(exc), reason="refused",
        ) from exc
    except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
        raise TargetUnreachable(
            f"{where}: could not connect: timed out after {remaining:.1f} s",
            host=host, port=port, sni=sni, cause="timed out", reason="timeout",
        ) from exc
    except (ConnectionResetError, ConnectionAbortedError) as exc:
        raise TargetUnreachable(
            f"{where}: could not connect: connection reset",
            host=host, port=port, sni=sni, cause=str(exc), reason="reset",
        ) from exc
    except OSError as exc:
        raise TargetUnreachable(
            f"{where}: could not connect: {exc.strerror or exc}",
            host=host, port=port, sni=sni, cause=str(exc), reason="unreachable",
        ) from exc


def _handshake(
    raw: socket.socket, ctx: ssl.SSLContext, host: str, port: int, sni: str | None, deadline: float
) -> ssl.SSLSocket:
    """TLS handshake on a connected socket. Closes ``raw`` on failure."""
    where = f"{host}:{port}"
    try:
        raw.settimeout(max(0.001, deadline - time.monotonic()))
        return ctx.wrap_socket(raw, server_hostname=_sni_value(sni), do_handshake_on_connect=True)
    except ssl.SSLCertVerificationError:
        raw.close()
        raise
    except ssl.SSLError as exc:  # includes SSLEOFError: server closed during handshake
        raw.close()
        raise TlsHandshakeFailed(
            f"{where}: TLS handshake failed (sni={sni!r}): {exc.reason or exc}",
            host=host, port=port, sni=sni, cause=str(exc), reason="tls",
        ) from exc
    except TimeoutError as exc:
        raw.close()
        raise TlsHandshakeFailed(
            f"{where}: TLS handshake timed out (connected, sni={sni!r})",
            host=host, port=port, sni=sni, cause="handshake timed out", reason="timeout",
        ) from exc
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        raw.close()
        raise TargetUnreachable(
            f"{where}: could not connect: connection reset before the TLS handshake completed",
            host=host, port=port, sni=sni, cause=str(exc), reason="reset",
        ) from exc
    except OSError as exc:
        raw.close()
        raise TargetUnreachable(
            f"{where}: could not connect: {exc.strerror or exc}",
            host=host, port=port, sni=sni, cause=str(exc), reason="unreachable",
        ) from exc


def served_chain(tls: ssl.SSLSocket) -> tuple[tuple[bytes, ...], str | None]:
    """(the certificates the peer sent, DER, leaf first, as sent; None) or ((), why not).

    Python 3.13 has ``SSLSocket.get_unverified_chain()`` (DER bytes). Python 3.12 (this
    project's venv and the Lambda runtime python3.12) has the same call only on the private
    ``_ssl._SSLSocket`` object behind ``tls._sslobj`` (since 3.10), returning ``_ssl.Certificate``
    objects whose ``public_bytes(_ssl.ENCODING_DER)`` is the DER; that private path is used
    there, and an interpreter offering neither is said so (never a silent "unknown")."""
    public = getattr(tls, "get_unverified_chain", None)  # Python >= 3.13
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)  # 3.10-3.12 (_ssl)
    try:
        if public is not None:
            raw_chain: Any = public()
        elif private is not None:
            raw_chain = private()
        else:
            return (), f"this Python ({sys.version.split()[0]}) cannot read the peer's certificate chain"
    except (ssl.SSLError, ValueError) as exc:
        return (), f"the peer's certificate chain could not be read: {exc}"
    if not raw_chain:
        return (), "the TLS library returned no peer certificate chain"
    out: list[bytes] = []
    for item in raw_chain:
        out.append(bytes(item) if isinstance(item, bytes | bytearray) else item.public_bytes(_ssl.ENCODING_DER))
    return tuple(out), None


def _verify_with_ca(
    host: str, port: int, sni: str | None, ca_bundle_pem: str, timeout: float
) -> tuple[bool, str | None]:
    """Second handshake that verifies the chain against ``ca_bundle_pem`` (and the
    hostname ``sni`` when given). Returns (verified, error text or None)."""
    try:
        ctx = ssl.create_default_context(cadata=ca_bundle_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"ca_bundle_pem holds no valid PEM certificate: {exc}") from None
    ctx.check_hostname = _sni_value(sni) is not None
    deadline = time.monotonic() + timeout
    raw = _connect(host, port, sni, deadline)
    try:
        tls = _handshake(raw, ctx, host, port, sni, deadline)
    except ssl.SSLCertVerificationError as exc:
        return False, str(exc.verify_message or exc)
    except TlsHandshakeFailed as exc:
        return False, exc.cause
    tls.close()
    return True, None


def probe_served_certificate(
    host: str,
    port: int,
    sni: str | None,
    *,
    timeout: float = 3.0,
    ca_bundle_pem: str | None = None,
) -> ServedCertificate:
    """Connect to ``host:port`` (TCP), do a TLS handshake sending ``sni`` as the
    RFC 6066 section 3 server_name, and return the served leaf certificate.

    The handshake does not verify (CERT_NONE): the leaf is read as DER with
    ``getpeercert(binary_form=True)`` and parsed with ``cryptography`` (the serial is
    the RFC 5280 INTEGER). ``timeout`` is seconds for connect + handshake together.
    With ``ca_bundle_pem`` (PEM text of trusted CA certificates) a second handshake
    verifies chain and hostname and sets ``verified``; otherwise ``verified`` is None.

    Raises TargetUnreachable (could not connect), TlsHandshakeFailed (connected, TLS
    failed), CertificateParseError (unparseable leaf).
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    sni = sni or None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    deadline = time.monotonic() + timeout
    raw = _connect(host, port, sni, deadline)
    tls = _handshake(raw, ctx, host, port, sni, deadline)
    try:
        der = tls.getpeercert(binary_form=True)
        tls_version = tls.version()
        chain_der, chain_error = served_chain(tls)
    finally:
        tls.close()
    if not der:
        raise TlsHandshakeFailed(
            f"{host}:{port}: TLS handshake completed but no certificate was presented",
            host=host, port=port, sni=sni, cause="no certificate", reason="no-certificate",
        )

    verified: bool | None = None
    verify_error: str | None = None
    if ca_bundle_pem:
        verified, verify_error = _verify_with_ca(host, port, sni, ca_bundle_pem, timeout)

    return parse_served_certificate(
        der,
        chain_length=len(chain_der) if chain_der else None,
        chain_der=chain_der,
        chain_error=chain_error,
        verified=verified,
        tls_version=tls_version,
        host=host,
        port=port,
        sni=sni,
        verify_error=verify_error,
    )


def verify_served_serial(
    host: str,
    port: int,
    sni: str | None,
    expected_serial: int,
    *,
    timeout: float = 3.0,
    ca_bundle_pem: str | None = None,
) -> VerificationResult:
    """Probe ``host:port`` with SNI ``sni`` and compare the served serial with
    ``expected_serial`` as integers (RFC 5280; case S1: no string comparison).

    A different serial is not an error: returns ``matches=False`` with both serials
    (case S2 "not serving the new serial"). Raises TargetUnreachable or
    TlsHandshakeFailed when no certificate could be read (case S4).
    """
    if not isinstance(expected_serial, int) or isinstance(expected_serial, bool):
        raise TypeError(f"expected_serial must be an int, got {type(expected_serial).__name__}")
    served = probe_served_certificate(host, port, sni, timeout=timeout, ca_bundle_pem=ca_bundle_pem)
    return VerificationResult(
        matches=served.serial == expected_serial,
        expected_serial=expected_serial,
        served_serial=served.serial,
        served=served,
    )
