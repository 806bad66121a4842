"""`cert-rollout status [--probe]`: for every certificate in the inventory, ACM's current serial and
NotAfter, and per target what was last deployed, when, with which outcome, and whether it drifts;
with --probe, what each target serves (a live TLS handshake through VerifyTarget's own checks:
rollout_core.logic.verify.probe_endpoint, logic.observe, domain.tls_checks), so that drift means
what the target serves, beside the bookkeeping."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cert_rollout.commands.common import (
    AsJson,
    EndpointUrl,
    InventoryTable,
    Region,
    StackOutputs,
    aws_client,
    aws_error,
    describe_certificate,
    emit_json,
    err_console,
    fail,
    out_console,
    progress_bar,
)
from cert_rollout.commands.targets import inventory, inventory_name, scan_inventory, target_row
from cert_rollout.render import one_line


def _deployed_serial(item: dict[str, Any]) -> int | None:
    """The target's lastDeployedSerial as an int; None when absent or unreadable."""
    from rollout_core.domain.serials import parse_serial

    last = item.get("lastDeployedSerial")
    try:
        return parse_serial(last) if last else None
    except Exception:  # noqa: BLE001
        return None


def _certificate_status(acm: Any, arn: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    """ACM's current serial and NotAfter of certificate ``arn`` (or the AWS error, named) and a
    row per inventory item in ``targets`` whose ``drift`` is True when its last deployed serial
    differs from the current one (compared as integers), None when the current serial is unknown."""
    from botocore.exceptions import BotoCoreError, ClientError
    from rollout_core.domain.serials import parse_serial

    entry: dict[str, Any] = {"certificateArn": arn, "serial": None, "notAfter": None, "error": None}
    current: int | None = None
    try:
        d = describe_certificate(acm, arn)
        entry.update(serial=d["serial"], notAfter=d["notAfter"])
        current = parse_serial(d["serial"]) if d["serial"] else None
    except (ClientError, BotoCoreError) as e:
        entry["error"] = aws_error(e)
    rows = []
    for t in targets:
        row = target_row(t)
        row["drift"] = None if current is None else _deployed_serial(t) != current
        rows.append(row)
    entry["targets"] = rows
    return entry


def trust_anchors(acm: Any, arn: str) -> tuple[Any, ...]:
    """The issuing CA's root of certificate ``arn`` (acm:GetCertificate's CertificateChain,
    its last certificate: domain.tls_checks.trust_anchor, as ExportCertificate takes it).
    Raises botocore's ClientError / BotoCoreError, NoTrustAnchor, ValueError (not PEM)."""
    from cryptography import x509
    from rollout_core.domain.tls_checks import trust_anchor

    answer = acm.get_certificate(CertificateArn=arn)
    chain = x509.load_pem_x509_certificates(answer["CertificateChain"].encode("ascii"))
    return (trust_anchor(chain),)


def probe_target(item: dict[str, Any], serial: str | None, anchors: tuple[Any, ...] | None, anchor_error: str | None,
                 timeout: float) -> dict[str, Any]:
    """What inventory ``item``'s endpoint (and each backend) serves, checked as VerifyTarget
    checks it (logic.verify.probe_endpoint: the target's SNI, ``probes`` handshakes, serial
    against ACM's current ``serial``, validity, chain to ``anchors``, host name). Returns
    passed (None when it could not be checked), servedSerial (colon hex), reason, detail
    (one line) and backends (one such entry each). Never raises for a target's answer."""
    from datetime import UTC, datetime

    from pydantic import ValidationError
    from rollout_core.adapters.tls import SocketTlsProbe
    from rollout_core.domain.serials import parse_serial
    from rollout_core.logic.observe import Expectation, check_name
    from rollout_core.logic.verify import probe_endpoint
    from rollout_core.models import Target

    try:
        target = Target.model_validate(item)
    except ValidationError as e:
        first = e.errors()[0]
        return {"passed": None, "servedSerial": None, "reason": "invalid-inventory-item",
                "detail": f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", "backends": None}
    if serial is None or anchors is None:
        return {"passed": None, "servedSerial": None, "reason": "not-checked",
                "detail": anchor_error or "ACM's current serial is unknown", "backends": None}
    expectation = Expectation(serial=parse_serial(serial), anchors=anchors, name=check_name(target),
                              now=datetime.now(UTC))
    probe = SocketTlsProbe()

    def one(host: str, port: int) -> dict[str, Any]:
        result, _ = probe_endpoint(probe, host, port, target, expectation, timeout=timeout)
        return {"endpoint": result.endpoint, "passed": result.passed, "servedSerial": result.servedSerial,
                "reason": result.reason, "detail": one_line(result.detail) if result.detail else None}

    main = one(target.host, target.port)
    backends = [one(host, port) for host, port in target.backend_endpoints()]
    return {**main, "passed": main["passed"] and all(b["passed"] for b in backends),
            "backends": backends if target.backends else None}


def _print_status(name: str, certs: list[dict[str, Any]], probed: bool) -> None:
    """Per certificate a rule, its current serial (or error) and a table of its targets."""
    out = out_console()
    if not certs:
        out.print(f"The inventory {name} is empty.")
    for c in certs:
        out.rule(c["certificateArn"])
        if c["error"]:
            out.print(f"[red]{c['error']}[/]", highlight=False)
        else:
            out.print(f"Current serial [bold]{c['serial']}[/], not after {c['notAfter']}")
        if probed:
            _print_probed(out, c)
            continue
        table = Table(title_justify="left")
        for col in ("Target", "Endpoint", "Last deployed serial", "At", "Outcome", "Drift"):
            table.add_column(col, overflow="fold")
        for r in c["targets"]:
            drift_cell = "?" if r["drift"] is None else ("[red]DRIFT[/]" if r["drift"] else "[green]no[/]")
            table.add_row(r["targetId"], r["endpoint"], r["lastDeployedSerial"] or "-", r["lastDeployedAt"] or "-",
                          r["lastOutcome"] or "-", drift_cell)
        out.print(table)


def _print_probed(out: Any, c: dict[str, Any]) -> None:
    """Per target of certificate ``c`` the recorded serial and the served one, each whole on
    its own line ("(= current)" when it is ACM's current serial), the check's reason and detail
    (wrapped at spaces only: serials stay whole)."""
    for r in c["targets"]:
        p = r["probe"]
        drift = "?" if r["drift"] is None else ("[red]DRIFT[/]" if r["drift"] else "[green]no drift[/]")
        out.print(f"[bold]{escape(r['targetId'])}[/] {escape(r['endpoint'])}  {drift}  "
                  f"(last outcome {escape(r['lastOutcome'] or '-')} at {escape(r['lastDeployedAt'] or '-')})",
                  soft_wrap=True, highlight=False)

        def serial_text(value: str | None) -> str:
            return "-" if not value else value + (" (= current)" if value == c["serial"] else "")

        out.print(f"  recorded {serial_text(r['lastDeployedSerial'])}", soft_wrap=True, highlight=False)
        out.print(f"  served   {serial_text(p['servedSerial'])}", soft_wrap=True, highlight=False)
        if p["reason"]:  # wrapped at spaces only: a serial in the detail stays whole on a line
            out.print(Text(one_line(f"  {p['reason']}: {p['detail'] or '-'}")), highlight=False)
        for b in p.get("backends") or []:
            out.print(Text(one_line(f"  backend {b['endpoint']} served {serial_text(b['servedSerial'])}"
                                    + (f", {b['reason']}: {b['detail'] or '-'}" if b["reason"] else ""))),
                      highlight=False)


def status(
    probe: bool = typer.Option(False, "--probe", help="Also TLS-handshake every target and check what it serves "
                                                      "as verification does (drift: what it serves)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="With --probe: seconds per handshake."),
    inventory_table_name: InventoryTable = None,
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """For every certificate in the inventory: ACM's current serial and NotAfter, and per target
    what was last deployed, when, with which outcome, and whether it is drift (last deployed
    serial != current serial). With --probe, drift is what the target serves: a live TLS check
    of every target (and backend) with VerifyTarget's checks (serial = ACM's current one,
    validity, chain to the issuing CA's root, host name), shown beside the recorded serial.
    Exit 1 when any target drifts."""
    from botocore.exceptions import BotoCoreError
    from rollout_core.adapters.errors import AwsError

    name, table = inventory_name(inventory_table_name, stack_outputs, as_json)
    acm = aws_client("acm", region, endpoint_url)
    try:
        items = scan_inventory(inventory(name, region, endpoint_url))
    except (AwsError, BotoCoreError) as e:
        fail(aws_error(e, table), 2, as_json)
    by_cert: dict[str, list[dict[str, Any]]] = {}
    for i in items:
        by_cert.setdefault(i["certificateArn"], []).append(i)
    certs: list[dict[str, Any]] = []
    with progress_bar(err_console()) as progress:
        task = progress.add_task("DescribeCertificate", total=len(by_cert))
        for arn, targets in by_cert.items():
            entry = _certificate_status(acm, arn, targets)
            if probe:
                _probe_certificate(acm, entry, targets, timeout)
            certs.append(entry)
            progress.advance(task)
    drift = any(r["drift"] for c in certs for r in c["targets"])
    if as_json:
        emit_json({"certificates": certs, "drift": drift})
    else:
        _print_status(name, certs, probe)
    raise typer.Exit(1 if drift else 0)


def _probe_certificate(acm: Any, entry: dict[str, Any], items: list[dict[str, Any]], timeout: float) -> None:
    """Add to each target row of ``entry`` its ``probe`` (probe_target) and ``recordedDrift``
    (the bookkeeping's drift); ``drift`` becomes what it serves: True when the check fails,
    None when it could not be checked."""
    from botocore.exceptions import BotoCoreError, ClientError
    from rollout_core.domain.tls_checks import NoTrustAnchor

    anchors: tuple[Any, ...] | None = None
    anchor_error: str | None = None
    if entry["serial"]:
        try:
            anchors = trust_anchors(acm, entry["certificateArn"])
        except (ClientError, BotoCoreError) as e:
            anchor_error = f"the issuing CA's root could not be read: {aws_error(e)}"
        except (NoTrustAnchor, ValueError) as e:
            anchor_error = f"the issuing CA's root could not be read: {e}"
    for row, item in zip(entry["targets"], items, strict=True):
        row["probe"] = probe_target(item, entry["serial"], anchors, anchor_error, timeout)
        row["recordedDrift"] = row["drift"]
        row["drift"] = None if row["probe"]["passed"] is None else not row["probe"]["passed"]


def register(app: typer.Typer) -> None:
    """Add ``status`` to the cert-rollout app."""
    app.command("status")(status)
