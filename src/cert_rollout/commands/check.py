"""`cert-rollout check HOST:PORT`: TLS-handshake a target (with SNI) and show the served leaf
certificate, optionally against the serial it must serve and the CAs it must chain to."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cert_rollout.commands.common import AsJson, canonical, emit_json, fail, out_console


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


def check(
    endpoint: str = typer.Argument(..., metavar="HOST:PORT", help="The target to probe."),
    sni: str | None = typer.Option(None, "--sni", help="SNI name to send (default: none when HOST is an IP, else HOST)."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", exists=True, dir_okay=False,
                                             help="PEM of trusted CAs: also verify chain and hostname."),
    expect_serial: str | None = typer.Option(None, "--expect-serial", help="Serial the target must serve (colon hex or decimal)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds for connect + handshake."),
    as_json: AsJson = False,
) -> None:
    """TLS-handshake HOST:PORT (with SNI) and show the served leaf certificate.

    Exit 1 when --expect-serial differs from the served serial (compared as integers),
    2 when unreachable or the handshake fails (the error is named)."""
    from rollout_core.domain.serials import parse_serial
    from rollout_core.probe import ProbeError, probe_served_certificate

    try:
        host, port = split_endpoint(endpoint)
    except ValueError as e:
        fail(str(e), 2, as_json)
    if sni is None:
        import ipaddress

        try:
            ipaddress.ip_address(host)
        except ValueError:
            sni = host
    expected: int | None = None
    if expect_serial is not None:
        try:
            expected = parse_serial(expect_serial)
        except Exception as e:  # noqa: BLE001 - InvalidSerial, shown as usage error
            fail(f"--expect-serial: {e}", 2, as_json)
    try:
        ca_pem = ca_bundle.read_text() if ca_bundle else None
    except (OSError, UnicodeDecodeError) as e:
        fail(f"--ca-bundle {ca_bundle}: not a readable PEM file ({type(e).__name__})", 2, as_json)
    try:
        served = probe_served_certificate(host, port, sni, timeout=timeout, ca_bundle_pem=ca_pem)
    except ProbeError as e:
        fail(f"{type(e).__name__}: {e}", 2, as_json, errorType=type(e).__name__, reason=e.reason,
              host=host, port=port, sni=sni)
    except ValueError as e:
        fail(str(e), 2, as_json)
    info: dict[str, Any] = {
        "endpoint": endpoint, "sni": sni, "subject": served.subject, "sans": served.sans,
        "serial": canonical(served.serial), "serialDecimal": str(served.serial), "issuer": served.issuer,
        "notBefore": served.not_before.isoformat(), "notAfter": served.not_after.isoformat(),
        "chainLength": served.chain_length, "verified": served.verified, "verifyError": served.verify_error,
        "tlsVersion": served.tls_version, "fingerprintSha256": served.fingerprint_sha256,
    }
    matches = None
    if expected is not None:
        matches = served.serial == expected
        info["expectedSerial"] = canonical(expected)
        info["matches"] = matches
    if as_json:
        emit_json(info)
    else:
        out = out_console()
        t = Table(title=escape(f"{endpoint} (SNI {sni or '-'})"), show_header=False, title_justify="left")
        t.add_column("field", style="bold")
        t.add_column("value")
        # Certificate text is the server's, not ours: shown literally, never as markup.
        rows = [("Subject", escape(served.subject)), ("SANs", escape(", ".join(served.sans)) or "-"),
                ("Serial", info["serial"]), ("Issuer", escape(served.issuer)), ("Not after", info["notAfter"]),
                ("Chain length", str(served.chain_length) if served.chain_length is not None else "unknown"),
                ("TLS", served.tls_version or "-")]
        if ca_bundle:
            rows.append(("Verified", "[green]yes[/]" if served.verified else f"[red]no[/] {escape(served.verify_error or '')}"))
        if expected is not None:
            rows.append(("Expected serial", f"{info['expectedSerial']} "
                         + ("[green]matches[/]" if matches else "[red]MISMATCH[/]")))
        for k, v in rows:
            t.add_row(k, v)
        out.print(t)
    raise typer.Exit(1 if matches is False else 0)


def register(app: typer.Typer) -> None:
    """Add ``check`` to the cert-rollout app."""
    app.command("check")(check)
