"""Step Functions execution history, read and rendered as the console lists it; shared by the
operator commands (history) and the local cloud (its run report)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table


def fetch_history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    """Every history event of execution ``arn`` (GetExecutionHistory, all pages), oldest first."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _ts(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _step(event: dict[str, Any]) -> str:
    for key, details in event.items():
        if key.endswith("EventDetails") and isinstance(details, dict) and details.get("name"):
            return str(details["name"])
    return ""


def _resource(event: dict[str, Any]) -> str:
    for key in ("taskScheduledEventDetails", "taskSucceededEventDetails", "taskFailedEventDetails"):
        details = event.get(key)
        if details:
            return f"{details.get('resourceType', '')}:{details.get('resource', '')}"
    return ""


def history_table(history: list[dict[str, Any]], title: str) -> Table:
    """The execution's events as the console lists them: ID, type, step, resource, elapsed."""
    table = Table(title=title, show_lines=False, title_justify="left")
    for col in ("ID", "Type", "Step", "Resource", "Elapsed (ms)", "Timestamp"):
        table.add_column(col, no_wrap=True)
    start = _ts(history[0]["timestamp"]) if history else None
    steps: dict[int, str] = {}
    for e in history:
        steps[e["id"]] = _step(e) or steps.get(e.get("previousEventId", -1), "")
        ts = _ts(e.get("timestamp"))
        elapsed = int((ts - start).total_seconds() * 1000) if ts and start else ""
        style = "red" if "Failed" in e["type"] else None
        table.add_row(str(e["id"]), e["type"], escape(steps[e["id"]]), escape(_resource(e)), str(elapsed),
                      ts.strftime("%H:%M:%S.%f")[:-3] if ts else "", style=style)
    return table
