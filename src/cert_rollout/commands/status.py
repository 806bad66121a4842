"""`cert-rollout status`: for every certificate in the inventory, ACM's current serial and
NotAfter, and per target what was last deployed, when, with which outcome, and whether it drifts."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

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


def _print_status(name: str, certs: list[dict[str, Any]]) -> None:
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
        table = Table(title_justify="left")
        for col in ("Target", "Endpoint", "Last deployed serial", "At", "Outcome", "Drift"):
            table.add_column(col, overflow="fold")
        for r in c["targets"]:
            drift_cell = "?" if r["drift"] is None else ("[red]DRIFT[/]" if r["drift"] else "[green]no[/]")
            table.add_row(r["targetId"], r["endpoint"], r["lastDeployedSerial"] or "-", r["lastDeployedAt"] or "-",
                          r["lastOutcome"] or "-", drift_cell)
        out.print(table)


def status(
    inventory_table_name: InventoryTable = None,
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """For every certificate in the inventory: ACM's current serial and NotAfter, and per target
    what was last deployed, when, with which outcome, and whether it is drift (last deployed
    serial != current serial). Exit 1 when any target drifts."""
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
            certs.append(_certificate_status(acm, arn, targets))
            progress.advance(task)
    drift = any(r["drift"] for c in certs for r in c["targets"])
    if as_json:
        emit_json({"certificates": certs, "drift": drift})
    else:
        _print_status(name, certs)
    raise typer.Exit(1 if drift else 0)


def register(app: typer.Typer) -> None:
    """Add ``status`` to the cert-rollout app."""
    app.command("status")(status)
