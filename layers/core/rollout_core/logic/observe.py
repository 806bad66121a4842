"""The one probe path: what a target's endpoint serves, and whether a client would accept it.

InstallOnTarget's probe before the install (logic/commands.py), VerifyTarget's probes
(logic/verify.py) and RecordTargetOutcome's probe after a restore (logic/outcome.py) all call
:func:`observe`: one TLS handshake through ports.TlsProbe, and with an :class:`Expectation`
the checks of domain/tls_checks.py on the chain it served. Nothing else in the logic calls the
probe port, so every caller sees the same handshake, the same errors and the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from rollout_core import ports
from rollout_core.contracts import VerifyReason
from rollout_core.domain.serials import canonical_serial
from rollout_core.domain.tls_checks import TlsCheck, check_served_chain
from rollout_core.models import Target
from rollout_core.probe import ProbeError, ServedCertificate, TargetUnreachable


@dataclass(frozen=True)
class Expectation:
    """What the served chain must satisfy: ``serial`` (int, the rollout's), ``anchors`` (the
    issuing CA's root certificate(s)), ``name`` (the name a client checks: check_name) and
    ``now`` (aware datetime: validity)."""

    serial: int
    anchors: tuple[x509.Certificate, ...]
    name: str
    now: datetime


@dataclass(frozen=True)
class Observation:
    """One handshake to ``host:port``: ``served`` (None when no certificate was read, then
    ``error`` says why), ``check`` (the checks' result; None without an Expectation, or when
    nothing was served)."""

    endpoint: str
    served: ServedCertificate | None
    error: ProbeError | None
    check: TlsCheck | None

    @property
    def served_serial_hex(self) -> str | None:
        """The served leaf's serial (lowercase colon hex) or None."""
        return self.served.serial_hex if self.served is not None else None

    @property
    def reason(self) -> VerifyReason | None:
        """Why the endpoint does not pass: ``unreachable`` (no TLS conversation),
        ``not-serving-new-serial`` for a failed handshake (no certificate: the new one is not
        served), the check's reason, or None when it passed (or nothing was expected)."""
        if self.error is not None:
            return "unreachable" if isinstance(self.error, TargetUnreachable) else "not-serving-new-serial"
        return self.check.reason if self.check is not None else None

    @property
    def detail(self) -> str | None:
        """One line for the reason: the probe error's message, the check's detail (with the
        SNI name sent), or None."""
        if self.error is not None:
            prefix = "" if isinstance(self.error, TargetUnreachable) else "TLS handshake failed: "
            return f"{prefix}{self.error}"
        if self.check is None or self.check.detail is None:
            return None
        sni = self.served.sni if self.served is not None else None
        return f"{self.endpoint}: {self.check.detail} (SNI {sni or '-'})"


def check_name(target: Target) -> str:
    """The name a client checks the target's certificate against: its SNI name, or its host
    when that is an IP address and no SNI is set (RFC 6125 section 6.4, domain.tls_checks)."""
    return target.sni or target.host


def endpoint_text(host: str, port: int) -> str:
    """``host:port``, IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def observe(probe: ports.TlsProbe, host: str, port: int, sni: str | None, *, timeout: float,
            expectation: Expectation | None = None) -> Observation:
    """One handshake to ``host:port`` sending ``sni`` (``timeout`` seconds for connect and
    handshake) and, with ``expectation``, the checks of domain.tls_checks.check_served_chain on
    the served chain. A chain the probe could not read (ServedCertificate.chain_error) counts as
    the leaf alone only for the serial; the chain check then says chain-invalid with that error.
    Never raises a ProbeError: it is returned in ``error``."""
    endpoint = endpoint_text(host, port)
    try:
        served = probe.served_certificate(host, port, sni, timeout=timeout)
    except ProbeError as e:
        return Observation(endpoint=endpoint, served=None, error=e, check=None)
    if expectation is None:
        return Observation(endpoint=endpoint, served=served, error=None, check=None)
    return Observation(endpoint=endpoint, served=served, error=None, check=check_served(served, expectation))


def check_served(served: ServedCertificate, expectation: Expectation) -> TlsCheck:
    """domain.tls_checks.check_served_chain on what one handshake served (VerifyTarget and
    ``cert-rollout check`` both use this). A chain the probe could not read
    (ServedCertificate.chain_error) is checked on the leaf for serial and validity, then
    chain-invalid naming why it could not be read."""
    if served.chain_der:
        return check_served_chain(served.chain_der, expected_serial=expectation.serial,
                                  anchors=expectation.anchors, name=expectation.name, now=expectation.now)
    return _unreadable_chain(served, expectation)


def _unreadable_chain(served: ServedCertificate, expectation: Expectation) -> TlsCheck:
    """The check when only the leaf is known: serial and validity as usual, then chain-invalid
    naming why the chain could not be read (nothing proves a client would accept it)."""
    if served.serial != expectation.serial:
        return TlsCheck(reason="not-serving-new-serial",
                        detail=f"expected serial {canonical_serial(expectation.serial)}, served {canonical_serial(served.serial)}",
                        served_serial=served.serial, chain_length=0)
    if not served.not_before <= expectation.now <= served.not_after:
        return TlsCheck(reason="expired", detail=f"the leaf is valid {served.not_before.isoformat()} to "
                        f"{served.not_after.isoformat()} (now {expectation.now.isoformat()})",
                        served_serial=served.serial, chain_length=0)
    return TlsCheck(reason="chain-invalid",
                    detail=f"the served chain could not be read: {served.chain_error or 'no chain returned'}",
                    served_serial=served.serial, chain_length=0)
