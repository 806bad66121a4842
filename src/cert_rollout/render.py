"""What an operator reads of a rollout execution, from what was already fetched: each target's
phase in words (from the history's state names), the execution's facts (trigger, serial,
outcome, targets verified/failed) and the console widths that keep a serial on one line.

Input only: DescribeExecution / ListExecutions entries and GetExecutionHistory events as boto3
returns them (cert_rollout.sfn fetches them); nothing here calls AWS. Shared by ``history``,
``rollouts``, ``renew --follow`` and the local cloud's live progress (demo, local run).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

from rich.console import Console

# --------------------------------------------------------------------------- phases in words

#: Each state of the per-target Map (statemachine/rollout.asl.json InstallTargets.ItemProcessor)
#: as the phase an operator reads. None: a Choice, which shows no phase of its own (the state it
#: picks does: "Verified" leads to waiting, rolling back or recording), and RecordTargetOutcome,
#: whose exit shows "done: OUTCOME". Every ItemProcessor state must be here
#: (tests/unit/test_render.py names a state that is missing).
TARGET_PHASES: dict[str, str | None] = {
    "InstallOnTarget": "installing",
    "ReconcileInstall": "installing (asking SSM for the final status)",
    "InstallStatusUnknown": "install status unknown",
    "InstallFinished": None,
    "BeginVerification": "verifying",
    "VerifyTarget": "verifying",
    "Verified": None,
    "WaitForReload": "waiting for reload",
    "ProbeOnProbeNode": "verifying (probe node)",
    "UseProbeNodeEvidence": "verifying (probe node evidence)",
    "RollbackTarget": "rolling back",
    "ReconcileRollback": "rolling back (asking SSM for the final status)",
    "RollbackStatusUnknown": "rollback status unknown",
    "RecordTargetOutcome": None,  # leaving it shows "done: OUTCOME" (phase_of)
    "OutcomeNotRecorded": "outcome not recorded",
}

#: The execution's own states (outside the Map) as the step an operator reads; None for the
#: Choice states, for the ends (the execution's status reports them) and for the Map (each
#: target's phases follow).
EXECUTION_PHASES: dict[str, str | None] = {
    "ValidateEvent": "validating the event",
    "EventRejected": "event rejected",
    "Route": None,
    "NothingToDo": "nothing to do",
    "ExportCertificate": "exporting the certificate",
    "ExportFailed": "export failed",
    "AcquireLease": "acquiring the lease",
    "LeaseAcquired?": None,
    "WaitForLease": "waiting for the lease",
    "LeaseNotAcquired": "lease not acquired",
    "LeaseFailed": "lease failed",
    "InstallTargets": None,  # each target's own phases follow
    "ReleaseLease": "releasing the lease",
    "Notify": "notifying",
    "NotificationFailed": None,
    "Succeeded?": None,
    "RolloutComplete": None,
    "ExpiryNotified": None,
    "EventNotAccepted": None,
    "RolloutFailed": None,
}

OUTCOME_STATE = "RecordTargetOutcome"


def json_or_none(text: Any) -> Any:
    """``text`` parsed as JSON; None when empty or not JSON."""
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError):
        return None


def target_of(data: Any) -> str | None:
    """The ``targetId`` of a state's input or output, None when it has none (outside the Map)."""
    return data.get("targetId") if isinstance(data, dict) and isinstance(data.get("targetId"), str) else None


def phase_of(event: dict[str, Any]) -> tuple[str | None, str] | None:
    """The phase one history event starts: (target id, or None for the execution itself; the
    phase in words), or None when the event starts none (a Choice, an exit, a task's own events).

    A target's phase comes from TARGET_PHASES by the entered state's name (a state not in it
    shows its name); leaving RecordTargetOutcome is ``done: OUTCOME`` (with the reason when it
    is not VERIFIED); the execution's end is its event type."""
    entered = event.get("stateEnteredEventDetails")
    if entered:
        name = str(entered.get("name", ""))
        target = target_of(json_or_none(entered.get("input")))
        table = TARGET_PHASES if target else EXECUTION_PHASES
        word = table.get(name, name)
        return (target, word) if word else None
    exited = event.get("stateExitedEventDetails")
    if exited and exited.get("name") == OUTCOME_STATE:
        out = json_or_none(exited.get("output")) or {}
        outcome = out.get("outcome") if isinstance(out, dict) else None
        reason = out.get("reason") if isinstance(out, dict) and outcome != "VERIFIED" else None
        return target_of(out), f"done: {outcome}" + (f" ({reason})" if reason else "")
    if event.get("type") in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
        return None, str(event["type"]).removeprefix("Execution").lower()
    return None


Change = tuple[datetime | None, str | None, str]  # (event time, target id or None, phase in words)


def _clock(ts: Any) -> str:
    return f"{ts:%H:%M:%S}" if isinstance(ts, datetime) else str(ts or "")[11:19]


class PhaseLines:
    """Progress lines from history events as they arrive: one line each time a target's (or
    the execution's) phase in words changes. Call with each new event; returns the line or None."""

    def __init__(self, width: int = 14) -> None:
        self.width = width
        self.last: dict[str | None, str] = {}

    def change(self, event: dict[str, Any]) -> Change | None:
        """(time, target, phase) when ``event`` changes a phase, else None (phase_of)."""
        found = phase_of(event)
        if found is None:
            return None
        target, word = found
        if self.last.get(target) == word:
            return None
        self.last[target] = word
        ts = event.get("timestamp")
        return (ts if isinstance(ts, datetime) else None), target, word

    def __call__(self, event: dict[str, Any]) -> str | None:
        """The line for ``event`` ("HH:MM:SS target phase"), None when its phase is unchanged."""
        found = self.change(event)
        if found is None:
            return None
        ts, target, word = found
        return f"{_clock(ts)} {(target or 'execution'):<{self.width}} {word}"


class PhaseGroups:
    """PhaseLines, on fewer lines: the targets that reach the same phase within ``window``
    seconds of the group's first change share one line ("10:00:01 web-1, web-2, web-3
    installing": N targets cost one line per phase, not N), and so do the execution's own steps
    ("10:00:09 execution releasing the lease, notifying"). ``add`` returns the lines to print
    now (a pending group ends when a change does not join it); ``flush`` the rest (call it when
    no event came for ``window`` seconds, and at the end)."""

    def __init__(self, width: int = 14, window: float = 2.0, names: int = 48) -> None:
        self.phases = PhaseLines(width)
        self.window = window
        self.names = names
        self.pending: list[Change] = []

    def _joins(self, change: Change) -> bool:
        ts, target, word = change
        first_ts, first_target, first_word = self.pending[0]
        if (target is None) != (first_target is None) or (target is not None and word != first_word):
            return False
        return ts is None or first_ts is None or (ts - first_ts).total_seconds() <= self.window

    def add(self, event: dict[str, Any]) -> list[str]:
        """The lines ``event`` completes (possibly none)."""
        change = self.phases.change(event)
        if change is None:
            return []
        out = self.flush() if self.pending and not self._joins(change) else []
        self.pending.append(change)
        return out

    def flush(self) -> list[str]:
        """The pending group as one line (none when nothing is pending)."""
        if not self.pending:
            return []
        ts, first_target, word = self.pending[0]
        group, self.pending = self.pending, []
        if first_target is None:
            return [f"{_clock(ts)} {'execution':<{self.phases.width}} {', '.join(w for _, _, w in group)}"]
        targets = [t for _, t, _ in group if t]
        who = ", ".join(targets)
        if len(who) > self.names:
            who = f"{len(targets)} targets ({targets[0]} .. {targets[-1]})"
        return [f"{_clock(ts)} {who:<{self.phases.width}} {word}"]


# --------------------------------------------------------------------------- execution facts

TRIGGERS = {"aws.health": "Health", "aws.acm": "ACM"}


def trigger_of(event: Any) -> tuple[str, str | None]:
    """(trigger, detail) of an execution's input: ``Health`` / ``ACM`` by the EventBridge
    event's ``source`` (detail: its eventTypeCode or detail-type), ``manual`` for an operator's
    request (no source, a certificateArn; detail: its reason), else ``unknown``
    (rollout_core.domain.events lists the accepted shapes)."""
    if not isinstance(event, dict):
        return "unknown", None
    source = event.get("source")
    if isinstance(source, str):
        detail = event.get("detail")
        code = detail.get("eventTypeCode") if isinstance(detail, dict) else None
        return TRIGGERS.get(source, source), (code or event.get("detail-type"))
    if "certificateArn" in event:
        reason = event.get("reason")
        return "manual", str(reason) if reason else None
    return "unknown", None


def certificate_of(event: Any) -> str | None:
    """The certificate ARN an execution's input names: a manual request's ``certificateArn``,
    an EventBridge event's first ``resources`` entry or (Health) first affected entity."""
    if not isinstance(event, dict):
        return None
    if isinstance(event.get("certificateArn"), str):
        return str(event["certificateArn"])
    resources = event.get("resources")
    if isinstance(resources, list) and resources and isinstance(resources[0], str):
        return resources[0]
    detail = event.get("detail")
    entities = detail.get("affectedEntities") if isinstance(detail, dict) else None
    if isinstance(entities, list) and entities and isinstance(entities[0], dict):
        value = entities[0].get("entityValue")
        return str(value) if value else None
    return None


def _exited_output(events: list[dict[str, Any]], state: str) -> Any:
    """The parsed output of the last exit of ``state`` (outside the Map), None when none."""
    for e in reversed(events):
        exited = e.get("stateExitedEventDetails")
        if exited and exited.get("name") == state:
            return json_or_none(exited.get("output"))
    return None


def execution_facts(execution: dict[str, Any], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What one rollout execution was, for ``rollouts`` (a row) and ``history`` (its heading).

    ``execution``: DescribeExecution's answer (executionArn, status, startDate, stopDate, input,
    output as JSON text). ``events``: its history, when fetched (needed only when the execution
    has no output, i.e. did not succeed). Returns executionArn, status, startDate / stopDate
    (ISO 8601), trigger and triggerDetail (trigger_of), certificateArn, serial (colon hex text
    as the state holds it), outcome (Notify's: ROLLED_OUT, ...; or ValidateEvent's decision for
    a duplicate), targetCount, verified, rolledBack, failed, superseded (None when not known),
    error and cause."""
    given = json_or_none(execution.get("input"))
    output = json_or_none(execution.get("output"))
    trigger, trigger_detail = trigger_of(given)
    facts: dict[str, Any] = {
        "executionArn": execution.get("executionArn"), "status": execution.get("status"),
        "startDate": _iso(execution.get("startDate")), "stopDate": _iso(execution.get("stopDate")),
        "trigger": trigger, "triggerDetail": trigger_detail, "certificateArn": certificate_of(given),
        "serial": None, "outcome": None, "targetCount": None, "verified": None, "rolledBack": None,
        "failed": None, "superseded": None, "error": execution.get("error"), "cause": execution.get("cause"),
    }
    notification = output if isinstance(output, dict) and "outcome" in output else None
    rollout = output if isinstance(output, dict) and "decision" in output else None
    if events:
        if notification is None:
            state = _exited_output(events, "Notify")
            notification = state.get("notification") if isinstance(state, dict) else None
        if rollout is None:
            state = _exited_output(events, "ValidateEvent")
            rollout = state.get("rollout") if isinstance(state, dict) else None
    if isinstance(rollout, dict):
        facts["certificateArn"] = rollout.get("certificateArn") or facts["certificateArn"]
        facts["serial"] = rollout.get("serial")
        facts["outcome"] = rollout.get("decision")
    if isinstance(notification, dict):
        facts["certificateArn"] = notification.get("certificateArn") or facts["certificateArn"]
        facts["serial"] = notification.get("expectedSerial") or facts["serial"]
        facts["outcome"] = notification.get("outcome")
        for key in ("targetCount", "verified", "rolledBack", "failed", "superseded"):
            facts[key] = notification.get(key)
    elif events:
        outcomes = [json_or_none(e["stateExitedEventDetails"].get("output")) or {} for e in events
                    if (e.get("stateExitedEventDetails") or {}).get("name") == OUTCOME_STATE]
        if outcomes:
            counted = [o.get("outcome") for o in outcomes if isinstance(o, dict)]
            facts.update(targetCount=len(counted), verified=counted.count("VERIFIED"),
                         rolledBack=counted.count("ROLLED_BACK"), failed=counted.count("FAILED"),
                         superseded=counted.count("SUPERSEDED"))
    return facts


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def targets_text(facts: dict[str, Any]) -> str:
    """``2/3 verified, 1 failed`` (rolled back / superseded when any); ``-`` when not known."""
    if facts.get("targetCount") is None:
        return "-"
    text = f"{facts['verified']}/{facts['targetCount']} verified"
    for key, word in (("rolledBack", "rolled back"), ("failed", "failed"), ("superseded", "superseded")):
        if facts.get(key):
            text += f", {facts[key]} {word}"
    return text


def facts_lines(facts: dict[str, Any]) -> list[str]:
    """The facts as plain lines (no markup): a heading for ``history`` and the run report, each
    line short and the serial whole on its own line."""
    trigger = facts["trigger"] + (f" ({facts['triggerDetail']})" if facts.get("triggerDetail") else "")
    lines = [f"Execution {facts['executionArn']}",
             f"Status {facts['status']}, outcome {facts.get('outcome') or '-'}, targets {targets_text(facts)}",
             f"Started {facts.get('startDate') or '-'}, stopped {facts.get('stopDate') or '-'}, trigger {trigger}",
             f"Certificate {facts.get('certificateArn') or '-'}",
             f"Serial {facts.get('serial') or '-'}"]
    if facts.get("error"):
        lines.append(one_line(f"Error {facts['error']}: {facts.get('cause') or ''}"))
    return lines


# --------------------------------------------------------------------------- consoles

#: Width of a console that is not a terminal (a pipe, a log file): wide enough for a row with
#: a whole serial (59 characters for 20 bytes), never so wide that a log viewer wraps it.
PIPE_WIDTH = 120


def console_for(stream: Any = None, *, stderr: bool = False) -> Console:
    """A console on ``stream`` (stdout, or stderr when ``stderr``): the terminal's width (or
    $COLUMNS), else PIPE_WIDTH when it is not a terminal; emoji off (a serial such as "fe:ab:b6" must never
    render as ":ab:" emoji)."""
    target = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    tty = bool(getattr(target, "isatty", lambda: False)())
    fixed = None if tty or os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH  # rich reads COLUMNS itself
    return Console(file=stream, stderr=stderr and stream is None, width=fixed, emoji=False)


def one_line(text: str, limit: int = 400) -> str:
    """``text`` with its line breaks as spaces, cut to ``limit`` characters (an error is one
    line whatever the width: print it with soft_wrap=True)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
