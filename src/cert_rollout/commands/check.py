"""`cert-rollout check HOST:PORT`: TLS-handshake a target (with SNI) and show the served leaf
certificate and chain, optionally against the serial it must serve and the roots it must chain
to, with the checks VerifyTarget makes (rollout_core.domain.tls_checks: serial, validity, chain,
host name, in that order)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from cert_rollout.commands.common import AsJson, canonical, emit_json, fail, out_console

if TYPE_CHECKING:
    from cryptography import x509
    from rollout_core.domain.tls_checks import TlsCheck
    from rollout_core.probe import ServedCertificate


def split_endpoint(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6addr]:PORT`` as (host, port). Raises ValueError naming the problem
    (not HOST:PORT, port outside 1..65535)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", value) or re.fullmatch(r"([^:\[\]]+):(\d+)", value)
    if not m:
        raise ValueError(f"{value!r} is not HOST:PORT (use [v6addr]:PORT for IPv6)")
    port = int(m.group(2))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not in 1..65535")
    return m.group(1), port


def _default_sni(host: str) -> str | None:
    """The SNI name sent when --sni is not given: none for an IP address, else HOST."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


def _expected_serial(expect_serial: str | None, as_json: bool) -> int | None:
    """--expect-serial as an int (None when not given); a bad serial is a usage error (exit 2)."""
    from rollout_core.domain.serials import parse_serial

    if expect_serial is None:
        return None
    try:
        return parse_serial(expect_serial)
    except Exception as e:  # noqa: BLE001 - InvalidSerial, shown as usage error
        fail(f"--expect-serial: {e}", 2, as_json)


def _read_ca_bundle(ca_bundle: Path | None, as_json: bool) -> list[x509.Certificate] | None:
    """The certificates of --ca-bundle (None when not given): the trust anchors, as the rollout
    uses the issuing CA's root. An unreadable file or one without a PEM certificate is a usage
    error (exit 2)."""
    from cryptography import x509

    if ca_bundle is None:
        return None
    try:
        return x509.load_pem_x509_certificates(ca_bundle.read_bytes())
    except (OSError, ValueError) as e:
        fail(f"--ca-bundle {ca_bundle}: not a readable PEM certificate file ({type(e).__name__})", 2, as_json)


def _probe(host: str, port: int, sni: str | None, timeout: float, as_json: bool) -> ServedCertificate:
    """The served certificate and chain (rollout_core.probe.ServedCertificate); exit 2 naming the
    error when the target is unreachable or the handshake fails."""
    from rollout_core.probe import ProbeError, probe_served_certificate

    try:
        return probe_served_certificate(host, port, sni, timeout=timeout)
    except ProbeError as e:
        fail(f"{type(e).__name__}: {e}", 2, as_json, errorType=type(e).__name__, reason=e.reason,
              host=host, port=port, sni=sni)
    except ValueError as e:
        fail(str(e), 2, as_json)


def _checks(served: ServedCertificate, anchors: list[x509.Certificate], name: str,
            expected: int | None) -> TlsCheck:
    """VerifyTarget's checks (rollout_core.logic.observe.check_served) on the served chain,
    against ``anchors`` and ``name``; the serial check passes when no serial is expected."""
    from datetime import UTC, datetime

    from rollout_core.logic.observe import Expectation, check_served

    serial = served.serial if expected is None else expected
    return check_served(served, Expectation(serial=serial, anchors=tuple(anchors), name=name, now=datetime.now(UTC)))


def _served_info(endpoint: str, sni: str | None, served: ServedCertificate,
                 expected: int | None, check: TlsCheck | None) -> dict[str, Any]:
    """The JSON view of the served certificate and chain; with an expected serial also
    ``expectedSerial`` and ``matches`` (serials compared as integers); with --ca-bundle
    ``verified`` and ``reason`` / ``verifyError`` (domain.tls_checks), else ``verified`` None."""
    info: dict[str, Any] = {
        "endpoint": endpoint, "sni": sni, "subject": served.subject, "sans": served.sans,
        "serial": canonical(served.serial), "serialDecimal": str(served.serial), "issuer": served.issuer,
        "notBefore": served.not_before.isoformat(), "notAfter": served.not_after.isoformat(),
        "chainLength": served.chain_length, "chain": served.to_dict()["chain"], "chainError": served.chain_error,
        "verified": check.passed if check is not None else None,
        "reason": check.reason if check is not None else None,
        "verifyError": check.detail if check is not None else None,
        "tlsVersion": served.tls_version, "fingerprintSha256": served.fingerprint_sha256,
    }
    if expected is not None:
        info["expectedSerial"] = canonical(expected)
        info["matches"] = served.serial == expected
    return info


def _print_served(info: dict[str, Any], served: ServedCertificate, verified_row: bool) -> None:
    """The served certificate as a table on stdout; ``verified_row`` when --ca-bundle was given."""
    out = out_console()
    t = Table(title=escape(f"{info['endpoint']} (SNI {info['sni'] or '-'})"), show_header=False,
              title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    # Certificate text is the server's, not ours: shown literally, never as markup.
    rows = [("Subject", escape(served.subject)), ("SANs", escape(", ".join(served.sans)) or "-"),
            ("Serial", info["serial"]), ("Issuer", escape(served.issuer)), ("Not after", info["notAfter"]),
            ("Chain length", str(served.chain_length) if served.chain_length is not None
             else f"not read: {escape(served.chain_error or '-')}"),
            *((f"  [{i}]", escape(f"{c['subject']} (issuer {c['issuer']})")) for i, c in enumerate(info["chain"])),
            ("TLS", served.tls_version or "-")]
    if verified_row:
        rows.append(("Verified", "[green]yes[/]" if info["verified"]
                     else f"[red]no[/] {info['reason']}: {escape(info['verifyError'] or '')}"))
    if "matches" in info:
        rows.append(("Expected serial", f"{info['expectedSerial']} "
                     + ("[green]matches[/]" if info["matches"] else "[red]MISMATCH[/]")))
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)


def check(
    endpoint: str = typer.Argument(..., metavar="HOST:PORT", help="The target to probe."),
    sni: str | None = typer.Option(None, "--sni", help="SNI name to send (default: none when HOST is an IP, else HOST)."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", exists=True, dir_okay=False,
                                             help="PEM of the trusted root(s) (the issuing CA's root): also "
                                                  "check validity, chain and host name as VerifyTarget does."),
    expect_serial: str | None = typer.Option(None, "--expect-serial", help="Serial the target must serve (colon hex or decimal)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds for connect + handshake."),
    as_json: AsJson = False,
) -> None:
    """TLS-handshake HOST:PORT (with SNI) and show the served leaf certificate and chain.

    With --ca-bundle, VerifyTarget's checks in its order (serial, validity, chain to those
    roots, host name: the SNI, or HOST when it is an IP and no --sni is given), naming the first
    that fails. Exit 1 when any check fails (--expect-serial compared as integers), 2 when
    unreachable or the handshake fails (the error is named)."""
    try:
        host, port = split_endpoint(endpoint)
    except ValueError as e:
        fail(str(e), 2, as_json)
    if sni is None:
        sni = _default_sni(host)
    expected = _expected_serial(expect_serial, as_json)
    anchors = _read_ca_bundle(ca_bundle, as_json)
    served = _probe(host, port, sni, timeout, as_json)
    check = _checks(served, anchors, sni or host, expected) if anchors is not None else None
    info = _served_info(endpoint, sni, served, expected, check)
    if as_json:
        emit_json(info)
    else:
        _print_served(info, served, verified_row=check is not None)
    raise typer.Exit(1 if info.get("matches") is False or info["verified"] is False else 0)


def register(app: typer.Typer) -> None:
    """Add ``check`` to the cert-rollout app."""
    app.command("check")(check)
