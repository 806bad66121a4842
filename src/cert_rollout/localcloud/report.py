"""The run report (JSON) and its console rendering: the execution history as the Step
Functions console shows it, and the per-target outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cert_rollout.localcloud.leaks import collect_surfaces, scan
from cert_rollout.localcloud.scenario import attach_sns_messages
from cert_rollout.render import one_line
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


COLORS = {"VERIFIED": "green", "ROLLED_BACK": "yellow", "FAILED": "red", "SUPERSEDED": "cyan"}


def _serial_names(entry: dict[str, Any]) -> dict[str, str]:
    """Each serial the targets served, by the word the summary shows for it: the rollout's
    expected serial ("new"), what the targets served before it ("previous"); any other is
    named "other N". Every serial is then printed whole, on its own line (serial_lines)."""
    names: dict[str, str] = {}
    if entry.get("expected_serial"):
        names[entry["expected_serial"]] = "new"
    for t in entry.get("targets", []):
        before = t.get("served_serial_before")
        if before and before not in names:
            names[before] = "previous" if "previous" not in names.values() else f"other {len(names)}"
    for t in entry.get("targets", []):
        after = t.get("served_serial_after")
        if after and after not in names:
            names[after] = f"other {len(names)}"
    return names


def targets_table(entry: dict[str, Any]) -> Table:
    """The per-target summary: outcome, reason (named), restore, and which serial the target
    served before and after, by name (_serial_names; the serials themselves are on their own
    lines, never wrapped in a cell)."""
    names = _serial_names(entry)
    table = Table(title="Targets", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("Target", "Endpoint", "Outcome", "Reason", "Restore", "Served before", "after"):
        table.add_column(col, overflow="fold")
    for t in entry.get("targets", []):
        restore = (t.get("restore_result") or "attempted") if t.get("restore_attempted") else "-"
        table.add_row(escape(t["id"]), escape(t.get("endpoint") or ""),
                      f"[{COLORS.get(t['outcome'], 'white')}]{escape(str(t['outcome']))}[/]",
                      escape(t.get("reason") or "-"), escape(one_line(restore, 60)),
                      names.get(t.get("served_serial_before") or "", "-"),
                      names.get(t.get("served_serial_after") or "", "-"))
    return table


def serial_lines(entry: dict[str, Any]) -> list[str]:
    """One line per serial the summary names ("new serial 0a:..."), then one line per target
    whose outcome is not VERIFIED with its detail: plain text, each a single line."""
    lines = [f"{name} serial {serial}" for serial, name in _serial_names(entry).items()]
    for t in entry.get("targets", []):
        if t.get("detail") and t.get("outcome") != "VERIFIED":
            lines.append(one_line(f"{t['id']}: {t['detail']}"))
    return lines


def render(report: dict[str, Any], console: Console, show_history: bool = False) -> None:
    """The run report for people: per event step its execution's outcome, the per-target
    summary (targets_table, serial_lines) and the SNS notification's subject and text; the
    execution history table only with ``show_history``. Errors and serials each on one line
    (printed with soft_wrap: never wrapped, whatever the console's width)."""
    for entry in report["events"]:
        label = entry.get("event") or json.dumps(entry.get("input"))[:80]
        console.rule(escape(f"step {entry['step']}: {label}"))
        if show_history and entry.get("history"):
            console.print(history_table(entry["history"], f"Execution history: {entry.get('executionArn')}"))
        color = {"ROLLED_OUT": "green", "ALREADY_DEPLOYED": "cyan", "SUPERSEDED": "cyan"}.get(entry["outcome"], "yellow")
        console.print(f"Execution [bold]{entry.get('status')}[/], outcome [bold {color}]{entry['outcome']}[/]")
        if entry.get("executionArn"):
            console.print(escape(str(entry["executionArn"])), soft_wrap=True, highlight=False)
        if entry.get("error") and entry["outcome"] not in ("ROLLED_OUT",):
            console.print(escape(one_line(f"error: {entry['error']['error']}: {entry['error']['cause']}")),
                          soft_wrap=True, highlight=False)
        if entry.get("targets"):
            console.print(targets_table(entry))
            for line in serial_lines(entry):
                console.print(escape(line), soft_wrap=True, highlight=False)
        for m in entry.get("sns_messages", []):
            console.print(f"SNS: [bold]{escape(m['Subject'] or '')}[/]", soft_wrap=True)
            for line in str(m.get("Message") or "").splitlines():
                if line.strip():
                    console.print("  " + escape(line), soft_wrap=True, highlight=False)
    leak = report.get("leak_check")
    if leak:
        if leak["findings"]:
            console.print(f"[bold red]LEAK CHECK FAILED[/]: {len(leak['findings'])} finding(s): {leak['findings'][:5]}")
        else:
            scanned = ", ".join(f"{v} {k}" for k, v in leak["scanned"].items())
            console.print(f"Leak check: no key material or passphrase found ({scanned} scanned)")
