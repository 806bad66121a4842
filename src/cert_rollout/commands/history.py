"""`cert-rollout history EXECUTION_ARN`: a rollout execution's history as an auditor reads it
(GetExecutionHistory): each state entered/exited with start and duration, each target's outcome,
every failure event, the execution's status and error."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cert_rollout.commands.common import (
    AsJson,
    EndpointUrl,
    Region,
    aws_client,
    aws_error,
    emit_json,
    fail,
    iso,
    out_console,
)
from cert_rollout.sfn import fetch_history, history_table


def json_or_none(text: Any) -> Any:
    """``text`` parsed as JSON; None when empty or not JSON."""
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError):
        return None


def target_of(data: Any) -> str | None:
    """The ``targetId`` of a state's input or output, None when it has none (outside the Map)."""
    return data.get("targetId") if isinstance(data, dict) and isinstance(data.get("targetId"), str) else None


def summarize_history(events: list[dict[str, Any]]) -> dict[str, Any]:
    """States (entered/exited, start, duration, target), target outcomes, failures."""
    states: list[dict[str, Any]] = []
    open_: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    outcomes: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for e in events:
        ts = e.get("timestamp")
        entered = e.get("stateEnteredEventDetails")
        exited = e.get("stateExitedEventDetails")
        if entered:
            row = {"state": entered.get("name"), "type": e["type"].replace("StateEntered", ""),
                   "target": target_of(json_or_none(entered.get("input"))), "entered": ts, "exited": None,
                   "durationMs": None, "enteredEventId": e["id"]}
            states.append(row)
            open_.setdefault((row["state"], row["target"]), []).append(row)
        elif exited:
            name = exited.get("name")
            out = json_or_none(exited.get("output"))
            target = target_of(out)
            queue = open_.get((name, target)) or next(
                (q for (n, _), q in open_.items() if n == name and q), None)
            if queue:
                row = queue.pop(0)
                row["exited"] = ts
                if isinstance(ts, datetime) and isinstance(row["entered"], datetime):
                    row["durationMs"] = int((ts - row["entered"]).total_seconds() * 1000)
            if name == "RecordTargetOutcome" and isinstance(out, dict):
                outcomes.append({"targetId": out.get("targetId"), "outcome": out.get("outcome"),
                                 "reason": out.get("reason")})
        for key, details in e.items():
            if key.endswith("FailedEventDetails") and isinstance(details, dict):
                failures.append({"id": e["id"], "type": e["type"], "error": details.get("error"),
                                 "cause": (details.get("cause") or "")[:500]})
    return {"states": states, "targets": outcomes, "failures": failures}


def history(
    execution_arn: str = typer.Argument(..., help="The rollout execution's ARN."),
    events_table: bool = typer.Option(False, "--events", help="Also list every history event as the console does."),
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """The execution's history as an auditor reads it: each state entered/exited with start and
    duration, each target's outcome, the execution's status and error. Exit 1 unless SUCCEEDED."""
    from botocore.exceptions import BotoCoreError, ClientError

    sfn = aws_client("stepfunctions", region, endpoint_url)
    try:
        desc = sfn.describe_execution(executionArn=execution_arn)
        events = fetch_history(sfn, execution_arn)
    except (ClientError, BotoCoreError) as e:
        fail(aws_error(e), 2, as_json)
    summary = summarize_history(events)
    result = {"executionArn": execution_arn, "status": desc["status"], "startDate": iso(desc.get("startDate")),
              "stopDate": iso(desc.get("stopDate")), "error": desc.get("error"), "cause": desc.get("cause"),
              "states": [{k: iso(v) if k in ("entered", "exited") else v for k, v in s.items()}
                         for s in summary["states"]],
              "targets": summary["targets"], "failures": summary["failures"], "eventCount": len(events)}
    if as_json:
        emit_json(result)
    else:
        _render_history(out_console(), result, events if events_table else None)
    raise typer.Exit(0 if desc["status"] == "SUCCEEDED" else 1)


def _render_history(out: Console, result: dict[str, Any], events: list[dict[str, Any]] | None) -> None:
    color = {"SUCCEEDED": "green", "RUNNING": "cyan"}.get(result["status"], "red")
    out.print(f"Execution [bold]{result['executionArn']}[/]")
    out.print(f"Status [bold {color}]{result['status']}[/]  started {result['startDate']}  "
              f"stopped {result['stopDate'] or '-'}  ({result['eventCount']} events)")
    if result.get("error"):
        out.print(f"Error [red]{result['error']}[/]: {(result.get('cause') or '')[:400]}", highlight=False)
    t = Table(title="States", title_justify="left")
    for col in ("State", "Type", "Target", "Entered", "Duration (ms)"):
        t.add_column(col, no_wrap=True)
    for s in result["states"]:
        entered = (s["entered"] or "")[11:23]
        t.add_row(s["state"] or "", s["type"], s["target"] or "", entered,
                  "-" if s["durationMs"] is None else str(s["durationMs"]))
    out.print(t)
    if result["targets"]:
        tt = Table(title="Targets", title_justify="left")
        for col in ("Target", "Outcome", "Reason"):
            tt.add_column(col)
        colors = {"VERIFIED": "green", "ROLLED_BACK": "yellow", "FAILED": "red"}
        for o in result["targets"]:
            tt.add_row(o["targetId"] or "", f"[{colors.get(o['outcome'], 'white')}]{o['outcome']}[/]", o["reason"] or "")
        out.print(tt)
    for f in result["failures"]:
        out.print(f"[red]{f['type']}[/] (event {f['id']}): {f['error']}: {f['cause'][:300]}", highlight=False)
    if events is not None:
        out.print(history_table(events, "Execution history"))


def register(app: typer.Typer) -> None:
    """Add ``history`` to the cert-rollout app."""
    app.command("history")(history)
