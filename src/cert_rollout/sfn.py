"""Step Functions reads shared by the CLI and the local cloud."""

from __future__ import annotations

from typing import Any


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
