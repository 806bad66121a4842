"""The run report (JSON) and its console rendering: the execution history as the Step
Functions console shows it, and the per-target outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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
    table = Table(box=None, pad_edge=False, header_style="bold underline")
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
    whose outcome is not VERIFIED with its detail (line breaks as spaces): plain text."""
    lines = [f"{name} serial {serial}" for serial, name in _serial_names(entry).items()]
    for t in entry.get("targets", []):
        if t.get("detail") and t.get("outcome") != "VERIFIED":
            lines.append(one_line(f"{t['id']}: {t['detail']}"))
    return lines


def render(report: dict[str, Any], console: Console, show_history: bool = False, written_to: Path | None = None) -> None:
    """The run report for people: per event step its execution's outcome, the per-target
    summary (targets_table, serial_lines) and the SNS notification's subject and text; the
    execution history table only with ``show_history``. The execution's error is one line
    (soft_wrap: never wrapped by us, whatever the width); the serial lines, the targets' details
    and the SNS text are wrapped at spaces only, so a serial (59 characters at most) is never
    broken. The last line: the leak
    check's verdict, and where the report was written (``written_to``)."""
    for entry in report["events"]:
        _render_entry(entry, console, show_history)
    _render_leak_check(report.get("leak_check"), console, written_to)


def _render_entry(entry: dict[str, Any], console: Console, show_history: bool) -> None:
    """One event step: its rule line (status, outcome), error, targets and SNS messages."""
    label = Path(str(entry.get("event"))).name if entry.get("event") else json.dumps(entry.get("input"))[:60]
    if show_history and entry.get("history"):
        console.print(history_table(entry["history"], f"Execution history: {entry.get('executionArn')}"))
    color = {"ROLLED_OUT": "green", "ALREADY_DEPLOYED": "cyan", "SUPERSEDED": "cyan"}.get(entry["outcome"], "yellow")
    console.rule(f"step {entry['step']}: {escape(label)}: {escape(str(entry.get('status')))}, "
                 f"[bold {color}]{escape(str(entry['outcome']))}[/]")
    if entry.get("error") and entry["outcome"] not in ("ROLLED_OUT",):
        console.print(escape(one_line(f"error: {entry['error']['error']}: {entry['error']['cause']}")),
                      soft_wrap=True, highlight=False)
    if entry.get("targets"):
        console.print(targets_table(entry))
        for line in serial_lines(entry):  # wrapped at spaces only: each serial stays whole on a line
            console.print(Text(line), highlight=False)
    for m in entry.get("sns_messages", []):
        console.print(f"SNS: [bold]{escape(m['Subject'] or '')}[/]", soft_wrap=True)
        for line in str(m.get("Message") or "").splitlines():
            if line.strip():  # wrapped at spaces (a serial moves whole to the next line), not cut
                console.print(Text("  " + line), highlight=False)


def _render_leak_check(leak: dict[str, Any] | None, console: Console, written_to: Path | None) -> None:
    """The leak check's verdict (each finding on its own line) and where the report went."""
    written = f"; report written to {written_to}" if written_to else ""
    if not leak and written_to:
        console.print(f"Report written to {escape(str(written_to))}", soft_wrap=True, highlight=False)
    if leak:
        if leak["findings"]:
            console.print(f"[bold red]LEAK CHECK FAILED[/]: {len(leak['findings'])} finding(s){escape(written)}",
                          soft_wrap=True)
            for finding in leak["findings"][:5]:
                console.print(escape(one_line(f"  {finding}")), soft_wrap=True, highlight=False)
        else:
            console.print(escape(f"Leak check: no key material or passphrase in {sum(leak['scanned'].values())} "
                                 f"surfaces{written}"), soft_wrap=True, highlight=False)
