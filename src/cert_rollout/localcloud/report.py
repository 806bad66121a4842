"""The run report (JSON) and its console rendering: the execution history as the Step
Functions console shows it, and the per-target outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cert_rollout.localcloud.leaks import collect_surfaces, scan
from cert_rollout.localcloud.scenario import attach_sns_messages
from cert_rollout.sfn import history_table


def finalize(report: dict[str, Any], cloud: Any) -> dict[str, Any]:
    """Attach SNS messages per event and run the leak check over every surface, the report
    itself (as written, before its leak_check section) included."""
    attach_sns_messages(report)
    arns = [a for e in report["events"] for a in e.get("executionArns", [])]
    surfaces = collect_surfaces(cloud, arns)
    surfaces["report"] = [("report", json.dumps(report, default=str))]
    findings = scan(surfaces, cloud.secrets)
    report["leak_check"] = {
        "scanned": {k: len(v) for k, v in surfaces.items()},
        "secrets_searched": {"passphrases": len(cloud.secrets.passphrases), "private_keys": len(cloud.secrets.key_pems)},
        "findings": [f.as_dict() for f in findings],
    }
    return report


def write(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def targets_table(entry: dict[str, Any]) -> Table:
    table = Table(title=f"Targets (expected serial {entry.get('expected_serial') or '-'})", title_justify="left")
    for col in ("Target", "Endpoint", "Outcome", "Reason", "Restore"):
        table.add_column(col)
    for col in ("Served before", "Served after"):
        table.add_column(col, overflow="fold", min_width=20)
    colors = {"VERIFIED": "green", "ROLLED_BACK": "yellow", "FAILED": "red", "SUPERSEDED": "cyan"}
    for t in entry.get("targets", []):
        reason = t.get("reason") or ""
        if t.get("detail") and t.get("outcome") != "VERIFIED":
            reason += f": {t['detail']}"
        restore = (t.get("restore_result") or "attempted") if t.get("restore_attempted") else "-"
        table.add_row(t["id"], t.get("endpoint") or "", f"[{colors.get(t['outcome'], 'white')}]{t['outcome']}[/]",
                      escape(reason[:160]), escape(restore[:120]), t.get("served_serial_before") or "-",
                      t.get("served_serial_after") or "-")
    return table


def render(report: dict[str, Any], console: Console, show_history: bool = True) -> None:
    for entry in report["events"]:
        label = entry.get("event") or json.dumps(entry.get("input"))[:80]
        console.rule(escape(f"step {entry['step']}: {label}"))
        if show_history and entry.get("history"):
            console.print(history_table(entry["history"], f"Execution history: {entry.get('executionArn')}"))
        color = {"ROLLED_OUT": "green", "ALREADY_DEPLOYED": "cyan", "SUPERSEDED": "cyan"}.get(entry["outcome"], "yellow")
        console.print(f"Execution [bold]{entry.get('status')}[/], outcome [bold {color}]{entry['outcome']}[/]")
        if entry.get("error") and entry["outcome"] not in ("ROLLED_OUT",):
            console.print(escape(f"  error: {entry['error']['error']}: {entry['error']['cause'][:300]}"))
        if entry.get("targets"):
            console.print(targets_table(entry))
        for m in entry.get("sns_messages", []):
            console.print(f"SNS: [bold]{escape(m['Subject'] or '')}[/]")
    leak = report.get("leak_check")
    if leak:
        if leak["findings"]:
            console.print(f"[bold red]LEAK CHECK FAILED[/]: {len(leak['findings'])} finding(s): {leak['findings'][:5]}")
        else:
            scanned = ", ".join(f"{v} {k}" for k, v in leak["scanned"].items())
            console.print(f"Leak check: no key material or passphrase found ({scanned} scanned)")
