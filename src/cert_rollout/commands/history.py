"""`cert-rollout history EXECUTION_ARN`: a rollout execution as an auditor reads it
(DescribeExecution, GetExecutionHistory): headed by its facts (trigger, serial, outcome, targets
verified/failed: render.execution_facts, as `rollouts` lists them), each target's outcome, every
failure event; with --history each state entered/exited with start and duration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
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
from cert_rollout.render import execution_facts, facts_lines, json_or_none, one_line, target_of
from cert_rollout.sfn import fetch_history, history_table

__all__ = ["history", "json_or_none", "register", "summarize_history", "target_of"]


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
    execution_arn: str = typer.Argument(..., help="The rollout execution's ARN (`cert-rollout rollouts` lists them)."),
    states_table: bool = typer.Option(False, "--history", help="Also list each state entered, with start and duration."),
    events_table: bool = typer.Option(False, "--events", help="Also list every history event as the console does."),
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """The execution as an auditor reads it: what triggered it, the serial, the outcome and
    targets verified/failed (the facts `rollouts` lists), each target's outcome and reason,
    every failure. The states table (each state entered and exited, start, duration) is added
    on request; the JSON holds all of it. Exit 1 unless SUCCEEDED."""
    from botocore.exceptions import BotoCoreError, ClientError

    sfn = aws_client("stepfunctions", region, endpoint_url)
    try:
        desc = sfn.describe_execution(executionArn=execution_arn)
        events = fetch_history(sfn, execution_arn)
    except (ClientError, BotoCoreError) as e:
        fail(aws_error(e), 2, as_json)
    summary = summarize_history(events)
    result = {**execution_facts(desc, events),
              "states": [{k: iso(v) if k in ("entered", "exited") else v for k, v in s.items()}
                         for s in summary["states"]],
              "targets": summary["targets"], "failures": summary["failures"], "eventCount": len(events)}
    if as_json:
        emit_json(result)
    else:
        _render_history(out_console(), result, states_table, events if events_table else None)
    raise typer.Exit(0 if desc["status"] == "SUCCEEDED" else 1)


def _render_history(out: Console, result: dict[str, Any], states: bool, events: list[dict[str, Any]] | None) -> None:
    """The facts (render.facts_lines), each target's outcome, every failure (one line each);
    the states table when ``states``, the events table when ``events`` is given."""
    for line in facts_lines(result):
        out.print(escape(line), soft_wrap=True, highlight=False)
    if states:
        t = Table(title=f"States ({result['eventCount']} events)", title_justify="left")
        for col in ("State", "Type", "Target", "Entered", "Duration (ms)"):
            t.add_column(col, no_wrap=True)
        for s in result["states"]:
            entered = (s["entered"] or "")[11:23]
            t.add_row(escape(s["state"] or ""), s["type"], escape(s["target"] or ""), entered,
                      "-" if s["durationMs"] is None else str(s["durationMs"]))
        out.print(t)
    if result["targets"]:
        tt = Table(title="Targets", title_justify="left")
        for col in ("Target", "Outcome", "Reason"):
            tt.add_column(col, overflow="fold")
        colors = {"VERIFIED": "green", "ROLLED_BACK": "yellow", "FAILED": "red"}
        for o in result["targets"]:
            tt.add_row(escape(o["targetId"] or ""), f"[{colors.get(o['outcome'], 'white')}]{o['outcome']}[/]",
                       escape(o["reason"] or ""))
        out.print(tt)
    for f in result["failures"]:
        out.print(escape(one_line(f"{f['type']} (event {f['id']}): {f['error']}: {f['cause']}")),
                  soft_wrap=True, highlight=False)
    if events is not None:
        out.print(history_table(events, "Execution history"))


def register(app: typer.Typer) -> None:
    """Add ``history`` to the cert-rollout app."""
    app.command("history")(history)
